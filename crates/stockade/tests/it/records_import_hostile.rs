//! Hostile CSV imports (issue #17 item 11), on SQLite and PostgreSQL:
//! quoting that the `csv` crate would silently "repair" (an unterminated
//! quote merging the rest of the file into one cell, text after a closing
//! quote) refuses the whole file with its line and stores nothing; formula
//! cells hidden behind a byte-order mark, zero-width or other invisible
//! characters, white space or full-width forms are refused, or stored
//! neutralised with `?formula_cells=escape`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{server, signup};
use crate::records::audit_details;
use crate::roles::call;
use crate::testkit::{Backend, TestServer};

async fn import(s: &TestServer, access: &str, query: &str, csv: &str) -> (StatusCode, Value) {
    let res = s
        .client
        .post(s.url(&format!("/v1/collections/orders/import{query}")))
        .bearer_auth(access)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Every record of `orders` (its `data`), in creation order.
async fn stored(s: &TestServer, access: &str) -> Vec<Value> {
    let (status, page) = call(
        s,
        Method::GET,
        "/v1/collections/orders/records?limit=200",
        access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"].clone())
        .collect()
}

async fn malformed_quoting_refuses_the_whole_file(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let shapes: [(&str, u64, &str); 7] = [
        // The report's file: one open quote merges three rows into a cell.
        ("name,amount\nA,\"1\nB,2\nC,3\n", 2, "never closed"),
        ("name,amount\nA,1\nB,\"2\n", 3, "never closed"),
        ("name,amount\n\"A\nB,2\nC,3\n", 2, "never closed"),
        ("name,amount\nA,1\n\"B\"x,2\nC,3\n", 3, "closing quote"),
        ("name,amount\nA,\"1\" \nB,2\n", 2, "closing quote"),
        (
            "name,amount\n\"multi\nline\"tail,1\nB,2\n",
            3,
            "closing quote",
        ),
        ("\"name\"x,amount\nA,1\n", 1, "closing quote"),
    ];
    for (csv, line, what) in shapes {
        let (status, body) = import(&s, &a.access, "", csv).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{csv:?}: {body}");
        assert_eq!(body["code"], "records.import_malformed", "{csv:?}: {body}");
        assert_eq!(body["errors"][0]["line"], line, "{csv:?}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(what), "{csv:?}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("line {line}:")),
            "{body}"
        );
        assert!(stored(&s, &a.access).await.is_empty(), "{csv:?} stored");
    }
    // Each refusal is audited with its line, never a cell.
    let failed = audit_details(&s, "acme", "records.import.failed").await;
    assert_eq!(failed.len(), shapes.len());
    for (d, (_, line, _)) in failed.iter().zip(shapes) {
        assert_eq!(d["code"], "records.import_malformed", "{d}");
        assert_eq!(d["first_line"], line, "{d}");
    }
    // The same file, quoted properly, imports every row.
    let (status, body) = import(&s, &a.access, "", "name,amount\nA,\"1\"\nB,2\nC,3\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["imported"], 3);
    s.stop().await;
}

async fn hidden_formula_cells_are_refused_or_neutralised(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let bypasses = [
        "\u{feff}=HYPERLINK(\"http://evil.test\",\"x\")",
        "\u{200b}=1+1",
        "\u{200d}+cmd|' /C calc'!A0",
        "\u{2060}-2+3",
        "\u{202e}@SUM(A1)",
        "\u{feff}\t=1",
        "＝1+1",
        "＋cmd",
        "－2+3",
        "＠SUM(A1)",
        "﹦1",
        " =1+1",
        "\u{200b}\u{feff} ＝HYPERLINK(\"x\")",
    ];
    for cell in bypasses {
        let csv = format!(
            "customer,total\nok,1\nx,\"{}\"\n",
            cell.replace('"', "\"\"")
        );
        let (status, body) = import(&s, &a.access, "", &csv).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{cell:?}: {body}");
        assert_eq!(body["code"], "records.import_invalid", "{body}");
        assert_eq!(
            body["errors"],
            json!([{"line": 3, "field": "total", "message": body["errors"][0]["message"]}]),
            "{cell:?}"
        );
        assert!(
            !body.to_string().contains(cell),
            "the cell is never echoed: {body}"
        );
        assert!(stored(&s, &a.access).await.is_empty(), "{cell:?} stored");
    }
    // With formula_cells=escape each is stored as text, prefixed with '.
    let mut csv = "customer,total\n".to_owned();
    for cell in bypasses {
        csv.push_str(&format!("x,\"{}\"\n", cell.replace('"', "\"\"")));
    }
    let (status, body) = import(&s, &a.access, "?formula_cells=escape", &csv).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let data = stored(&s, &a.access).await;
    let totals: Vec<&str> = data.iter().map(|d| d["total"].as_str().unwrap()).collect();
    let escaped: Vec<String> = bypasses.iter().map(|c| format!("'{c}")).collect();
    assert_eq!(totals, escaped);
    // Plain numbers behind the same characters are data, kept as sent.
    let (status, body) = import(
        &s,
        &a.access,
        "",
        "customer,total\nx,\u{feff}-12.5\ny,－12\nz, +3\n",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let data = stored(&s, &a.access).await;
    let last: Vec<&str> = data[data.len() - 3..]
        .iter()
        .map(|d| d["total"].as_str().unwrap())
        .collect();
    assert_eq!(last, ["\u{feff}-12.5", "－12", " +3"]);
    s.stop().await;
}

crate::both_servers!(
    malformed_quoting_refuses_the_whole_file,
    hidden_formula_cells_are_refused_or_neutralised,
);
