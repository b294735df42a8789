//! The scheduled jobs of a running server (`jobs`, issue #18 item 5): the
//! real binary lists each job in `/readyz` with its schedule and last run,
//! shows only whether a run failed (never its text: `/readyz` answers
//! anyone), and runs the development mail sender outside production only.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{Started, production_env, start_capturing, stop};

/// `/readyz`'s `jobs`, by name.
async fn jobs(s: &Started) -> BTreeMap<String, Value> {
    let ready: Value = reqwest::get(format!("{}/readyz", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    ready["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in {ready}"))
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_owned(), j.clone()))
        .collect()
}

/// Polls `/readyz` (up to a minute) until every job run at start has
/// finished its first run.
async fn after_first_runs(s: &Started, at_start: &[&str]) -> BTreeMap<String, Value> {
    for _ in 0..600 {
        let all = jobs(s).await;
        if at_start.iter().all(|name| {
            all.get(*name)
                .is_some_and(|j| j["runs"].as_u64() >= Some(1))
        }) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the jobs run at start did not all finish a run: {:?}",
        jobs(s).await
    );
}

#[tokio::test]
async fn readyz_lists_the_jobs_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (started, _stdout) = start_capturing(dir.path(), &[], &log);
    let at_start = [
        "audit.chain_verification",
        "audit.webhook_delivery",
        "audit.retention_purge",
        "platform.impersonation_sweep",
        "email.dev_sender",
        "audit.refusal_flush",
        "ops.alerts",
    ];
    let all = after_first_runs(&started, &at_start).await;
    // Embedded mode: the one instance leads.
    let ready: Value = reqwest::get(format!("{}/readyz", started.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["leadership"],
        serde_json::json!({"method": "single-instance", "leader": true})
    );
    let schedule: Vec<(&str, u64, bool)> = all
        .values()
        .map(|j| {
            (
                j["name"].as_str().unwrap(),
                j["period_secs"].as_u64().unwrap(),
                j["leader_only"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        schedule,
        [
            ("audit.chain_verification", 86_400, true),
            ("audit.refusal_flush", 60, false),
            ("audit.retention_purge", 86_400, true),
            ("audit.webhook_delivery", 5, true),
            ("crypto.keyring_reload", 30, false),
            ("email.dev_sender", 1, true),
            ("ops.alerts", 15, false),
            ("platform.impersonation_sweep", 300, true),
        ]
    );
    for name in at_start {
        let job = &all[name];
        assert_eq!(job["last_outcome"], "ok", "{job}");
        for field in ["last_started_at", "last_finished_at", "last_duration_ms"] {
            assert!(!job[field].is_null(), "{name}: {field} in {job}");
        }
        // Whether it failed, nothing of what it said.
        let mut keys: Vec<&str> = job
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "last_duration_ms",
                "last_finished_at",
                "last_outcome",
                "last_started_at",
                "leader_only",
                "name",
                "period_secs",
                "runs",
                "standby_ticks"
            ],
            "{job}"
        );
    }
    assert!(stop(started).success());
}

#[tokio::test]
async fn production_runs_no_development_mail_sender() {
    let dir = tempfile::tempdir().unwrap();
    let env = production_env(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log = dir.path().join("server.log");
    let (started, _stdout) = start_capturing(dir.path(), &env, &log);
    let all = after_first_runs(&started, &["audit.retention_purge"]).await;
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "audit.chain_verification",
            "audit.refusal_flush",
            "audit.retention_purge",
            "audit.webhook_delivery",
            "crypto.keyring_reload",
            "ops.alerts",
            "platform.impersonation_sweep",
        ]
    );
    assert!(stop(started).success());
}
