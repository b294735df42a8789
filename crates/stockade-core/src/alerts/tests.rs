//! Every rule of the detector, driven by moved time: raise, stay, clear,
//! hysteresis, minimum samples, per-address isolation, bounded memory.

use super::*;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn alerts() -> Alerts<String> {
    Alerts::new(Settings::default())
}

fn requests(total: u64, client_errors: u64, server_errors: u64) -> Requests {
    Requests {
        total,
        client_errors,
        server_errors,
    }
}

/// The alerts raised (true) or cleared (false) by one evaluation.
fn changes(a: &mut Alerts<String>, now: DateTime<Utc>) -> Vec<(&'static str, bool)> {
    a.evaluate(now)
        .into_iter()
        .map(|t| (t.alert.name(), t.raised))
        .collect()
}

#[test]
fn nothing_observed_raises_nothing_ever() {
    let mut a = alerts();
    for hours in [0, 1, 27, 1000] {
        assert!(changes(&mut a, t0() + Duration::hours(hours)).is_empty());
    }
    assert!(Alert::ALL.iter().all(|x| !a.is_raised(*x)));
}

#[test]
fn names_are_stable_and_distinct() {
    let names: Vec<&str> = Alert::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(
        names,
        [
            "http_5xx_rate",
            "http_4xx_spike",
            "rate_limited_address",
            "webhook_failure_rate",
            "email_failure_rate",
            "backup_overdue",
            "backup_failed",
            "audit_chain_verification_failed",
        ]
    );
}

#[test]
fn server_errors_raise_stay_and_clear_after_a_whole_window_under() {
    let mut a = alerts();
    // 5 % of 100 requests: the threshold is reached.
    a.observe_requests(t0(), requests(100, 0, 5));
    assert_eq!(changes(&mut a, t0()), [("http_5xx_rate", true)]);
    let e = a.evaluate(t0());
    assert!(e.is_empty(), "raised once, not again: {e:?}");
    // Healthy traffic pours in: the ratio drops under 5 % at once...
    a.observe_requests(t0() + secs(30), requests(1000, 0, 0));
    assert!(changes(&mut a, t0() + secs(30)).is_empty());
    // ...but the alert stays until a whole window passed since the last
    // evaluation that found it over (t0).
    assert!(changes(&mut a, t0() + secs(299)).is_empty());
    assert!(a.is_raised(Alert::Http5xxRate));
    assert_eq!(
        changes(&mut a, t0() + secs(300)),
        [("http_5xx_rate", false)]
    );
}

#[test]
fn server_errors_under_the_ratio_or_the_minimum_requests_raise_nothing() {
    let mut a = alerts();
    // 4.9 %: under.
    a.observe_requests(t0(), requests(1000, 0, 49));
    assert!(changes(&mut a, t0()).is_empty());
    // All failed, but only 49 requests (minimum 50).
    let mut a = alerts();
    a.observe_requests(t0(), requests(49, 0, 49));
    assert!(changes(&mut a, t0()).is_empty());
    // One more request reaches the minimum.
    a.observe_requests(t0() + secs(1), requests(1, 0, 1));
    assert_eq!(changes(&mut a, t0() + secs(1)), [("http_5xx_rate", true)]);
}

#[test]
fn server_errors_older_than_the_window_no_longer_count() {
    let mut a = alerts();
    a.observe_requests(t0(), requests(60, 0, 60));
    a.observe_requests(t0() + secs(301), requests(60, 0, 0));
    // At t0+301 the failures are 301 s old: outside the 300 s window.
    assert!(changes(&mut a, t0() + secs(301)).is_empty());
}

#[test]
fn hysteresis_keeps_a_hovering_rate_raised_and_clears_a_window_after_the_last_breach() {
    let mut a = alerts();
    let at = |s| t0() + secs(s);
    a.observe_requests(at(0), requests(100, 0, 10));
    assert_eq!(changes(&mut a, at(0)), [("http_5xx_rate", true)]);
    // Under at 120 s, over again at 200 s (new failures), under after.
    a.observe_requests(at(120), requests(1000, 0, 0));
    assert!(changes(&mut a, at(120)).is_empty());
    a.observe_requests(at(200), requests(10, 0, 60));
    assert!(changes(&mut a, at(200)).is_empty());
    a.observe_requests(at(210), requests(5000, 0, 0));
    assert!(changes(&mut a, at(210)).is_empty());
    // 300 s after the first breach it would have cleared without the second.
    assert!(changes(&mut a, at(300)).is_empty());
    assert!(changes(&mut a, at(499)).is_empty());
    assert_eq!(changes(&mut a, at(500)), [("http_5xx_rate", false)]);
    // Raised again by a new breach.
    a.observe_requests(at(600), requests(50, 0, 50));
    assert_eq!(changes(&mut a, at(600)), [("http_5xx_rate", true)]);
}

/// 50 client errors in each of the 12 windows before `start` (the baseline).
fn steady_baseline(a: &mut Alerts<String>, start: DateTime<Utc>) {
    for k in (1..=12).rev() {
        let at = start - secs(300 * k);
        a.observe_requests(at, requests(100, 50, 0));
        assert!(changes(a, at).is_empty(), "{at}");
    }
}

#[test]
fn a_client_error_spike_over_the_baseline_raises_and_clears() {
    let mut a = alerts();
    let start = t0();
    steady_baseline(&mut a, start);
    // 4 × 50 = 200 is not a spike yet: it must be more.
    a.observe_requests(start, requests(200, 200, 0));
    assert!(changes(&mut a, start).is_empty());
    a.observe_requests(start + secs(15), requests(1, 1, 0));
    assert_eq!(
        changes(&mut a, start + secs(15)),
        [("http_4xx_spike", true)]
    );
    let ev = a.evaluate(start + secs(15));
    assert!(ev.is_empty());
    // Quiet for a whole window after the last breach: cleared.
    assert!(changes(&mut a, start + secs(314)).is_empty());
    assert_eq!(
        changes(&mut a, start + secs(315)),
        [("http_4xx_spike", false)]
    );
}

#[test]
fn a_client_error_spike_needs_the_minimum_count() {
    let mut a = alerts();
    // No baseline at all (zero), but only 99 client errors: minimum 100.
    a.observe_requests(t0(), requests(99, 99, 0));
    assert!(changes(&mut a, t0()).is_empty());
    a.observe_requests(t0() + secs(1), requests(1, 1, 0));
    let t = a.evaluate(t0() + secs(1));
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].alert, Alert::Http4xxSpike);
    assert_eq!(t[0].evidence["client_errors"], 100);
    assert_eq!(t[0].evidence["baseline_per_window"], 0);
}

#[test]
fn a_high_but_steady_client_error_level_is_no_spike() {
    let mut a = Alerts::<String>::new(Settings {
        client_error_min: 10,
        ..Settings::default()
    });
    // 150 per window for two hours: high, but its own baseline.
    let mut at = t0();
    let mut raised = Vec::new();
    while at < t0() + Duration::hours(2) {
        a.observe_requests(at, requests(10, 7, 0));
        raised.extend(changes(&mut a, at));
        at += secs(15);
    }
    // The first hour has no baseline (zero before start): raised then, and
    // cleared once the baseline caught up.
    assert_eq!(raised.first(), Some(&("http_4xx_spike", true)));
    assert_eq!(raised.last(), Some(&("http_4xx_spike", false)));
    assert!(!a.is_raised(Alert::Http4xxSpike));
}

#[test]
fn rate_limit_hits_count_per_address_and_only_the_offender_is_named() {
    let mut a = alerts();
    let (one, two) = ("198.51.100.7".to_owned(), "203.0.113.9".to_owned());
    // 29 + 29 refusals from two addresses: neither reaches 30.
    for i in 0..29 {
        a.observe_rate_limited(t0() + secs(i), &one, 1);
        a.observe_rate_limited(t0() + secs(i), &two, 1);
    }
    assert!(changes(&mut a, t0() + secs(30)).is_empty());
    a.observe_rate_limited(t0() + secs(31), &one, 1);
    let t = a.evaluate(t0() + secs(31));
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!((t[0].alert, t[0].raised), (Alert::RateLimitedAddress, true));
    assert_eq!(t[0].evidence["addresses_over"], 1);
    assert_eq!(
        t[0].evidence["addresses"],
        json!([{ "address": "198.51.100.7", "hits": 30 }])
    );
    assert!(!t[0].evidence.to_string().contains("203.0.113.9"));
    // No more refusals: cleared a whole window after the last breach.
    assert!(changes(&mut a, t0() + secs(330)).is_empty());
    assert_eq!(
        changes(&mut a, t0() + secs(331)),
        [("rate_limited_address", false)]
    );
}

#[test]
fn rate_limit_hits_spread_over_more_than_a_window_raise_nothing() {
    let mut a = alerts();
    let addr = "192.0.2.1".to_owned();
    // 60 refusals, one every 11 s: at most 28 in any 300 s.
    for i in 0..60 {
        let at = t0() + secs(i * 11);
        a.observe_rate_limited(at, &addr, 1);
        assert!(changes(&mut a, at).is_empty(), "{i}");
    }
}

#[test]
fn the_address_table_is_bounded_and_forgets_the_stalest_first() {
    let mut a = alerts();
    for i in 0..MAX_ADDRESSES {
        a.observe_rate_limited(t0() + secs(i as i64 / 100), &format!("a{i}"), 1);
    }
    assert_eq!(a.limited.len(), MAX_ADDRESSES);
    // A new address evicts the one seen longest ago, never the newest.
    let at = t0() + secs(200);
    a.observe_rate_limited(at, &"late".to_owned(), 40);
    assert_eq!(a.limited.len(), MAX_ADDRESSES);
    assert!(a.limited.contains_key("late"));
    assert!(a.limited.contains_key(&format!("a{}", MAX_ADDRESSES - 1)));
    assert_eq!(changes(&mut a, at), [("rate_limited_address", true)]);
    // Past the window, a new address finds the expired ones dropped.
    a.observe_rate_limited(at + secs(600), &"later".to_owned(), 1);
    assert!(a.limited.len() <= 2, "{}", a.limited.len());
}

#[test]
fn webhook_and_email_failure_rates_are_judged_apart_with_a_minimum() {
    let mut a = alerts();
    let failed = |ok, failed| Deliveries { ok, failed };
    // 4 failed attempts of 4: under the minimum of 5.
    a.observe_webhook_deliveries(t0(), failed(0, 4));
    assert!(changes(&mut a, t0()).is_empty());
    // 5 of 10 failed: 50 %, raised; email untouched.
    a.observe_webhook_deliveries(t0() + secs(10), failed(5, 1));
    assert_eq!(
        changes(&mut a, t0() + secs(10)),
        [("webhook_failure_rate", true)]
    );
    assert!(!a.is_raised(Alert::EmailFailureRate));
    // Email: 2 failed of 5 is 40 %: under.
    a.observe_email_deliveries(t0() + secs(20), failed(3, 2));
    assert!(changes(&mut a, t0() + secs(20)).is_empty());
    a.observe_email_deliveries(t0() + secs(21), failed(0, 1));
    assert_eq!(
        changes(&mut a, t0() + secs(21)),
        [("email_failure_rate", true)]
    );
    // Both were last over at the evaluation of t0+21: both clear a whole
    // window after it, not before.
    assert!(changes(&mut a, t0() + secs(320)).is_empty());
    assert_eq!(
        changes(&mut a, t0() + secs(321)),
        [
            ("webhook_failure_rate", false),
            ("email_failure_rate", false)
        ]
    );
}

#[test]
fn no_backup_configured_raises_nothing_and_an_old_backup_is_overdue() {
    let mut a = alerts();
    assert!(changes(&mut a, t0() + Duration::days(30)).is_empty());
    a.observe_backup(true, t0());
    assert!(changes(&mut a, t0() + Duration::hours(26)).is_empty());
    let late = t0() + Duration::hours(26) + secs(1);
    let t = a.evaluate(late);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].alert, t[0].raised), (Alert::BackupOverdue, true));
    assert_eq!(t[0].evidence["max_age_hours"], 26);
    // A fresh backup clears it at the next evaluation.
    a.observe_backup(true, late + secs(5));
    assert_eq!(
        changes(&mut a, late + secs(15)),
        [("backup_overdue", false)]
    );
}

#[test]
fn a_failed_backup_raises_until_one_succeeds_and_never_succeeding_is_overdue() {
    let mut a = alerts();
    a.observe_backup(false, t0());
    assert_eq!(changes(&mut a, t0()), [("backup_failed", true)]);
    // Never a success: overdue 26 h after the first report.
    assert_eq!(
        changes(&mut a, t0() + Duration::hours(27)),
        [("backup_overdue", true)]
    );
    // A report older than the last one changes nothing.
    a.observe_backup(true, t0() - secs(1));
    assert!(a.is_raised(Alert::BackupFailed));
    let ok = t0() + Duration::hours(27) + secs(1);
    a.observe_backup(true, ok);
    assert_eq!(
        changes(&mut a, ok),
        [("backup_overdue", false), ("backup_failed", false)]
    );
}

#[test]
fn a_failed_chain_verification_raises_until_one_passes() {
    let mut a = alerts();
    a.observe_chain_verification(true, t0());
    assert!(changes(&mut a, t0()).is_empty());
    a.observe_chain_verification(false, t0() + secs(10));
    let t = a.evaluate(t0() + secs(15));
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].alert, t[0].raised),
        (Alert::AuditChainVerificationFailed, true)
    );
    assert_eq!(t[0].evidence["ok"], false);
    // Stays raised while nothing new is reported.
    assert!(changes(&mut a, t0() + Duration::days(2)).is_empty());
    a.observe_chain_verification(true, t0() + Duration::days(2));
    assert_eq!(
        changes(&mut a, t0() + Duration::days(2)),
        [("audit_chain_verification_failed", false)]
    );
}

#[test]
fn thresholds_come_from_the_settings() {
    let mut a = Alerts::<String>::new(Settings {
        window: Duration::minutes(1),
        server_error_percent: 50,
        server_error_min_requests: 2,
        rate_limit_hits: 3,
        ..Settings::default()
    });
    a.observe_requests(t0(), requests(4, 0, 1));
    a.observe_rate_limited(t0(), &"x".to_owned(), 2);
    assert!(changes(&mut a, t0()).is_empty());
    a.observe_requests(t0() + secs(1), requests(2, 0, 2));
    a.observe_rate_limited(t0() + secs(1), &"x".to_owned(), 1);
    assert_eq!(
        changes(&mut a, t0() + secs(1)),
        [("http_5xx_rate", true), ("rate_limited_address", true)]
    );
    // The one-minute window clears both a minute later.
    assert_eq!(
        changes(&mut a, t0() + secs(61)),
        [("http_5xx_rate", false), ("rate_limited_address", false)]
    );
}

#[test]
fn many_observations_stay_in_a_bounded_number_of_buckets() {
    let mut a = alerts();
    let addr = "2001:db8::/64".to_owned();
    for ms in 0..100_000 {
        let at = t0() + Duration::milliseconds(ms * 3);
        a.observe_requests(at, requests(1, 0, 0));
        a.observe_rate_limited(at, &addr, 1);
    }
    // 300 s of 10 s buckets, plus the hour of baseline for requests.
    assert!(a.limited[&addr].len() <= 31, "{}", a.limited[&addr].len());
    assert!(a.requests.len() <= 13 * 31, "{}", a.requests.len());
}
