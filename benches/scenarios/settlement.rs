//! Scenario 7, `settlement import` of a large report: `n` PAYMENT rows for `n` confirmed orders
//! (every row matched, so every order gets its `reconciliation.settlement` mark), the release
//! binary under `/usr/bin/time -v` (wall time, peak RSS), the database requests it made
//! (`serverStatus` `network.numRequests` around the import), then the same file again (every row
//! already imported).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use mongodb::bson::{doc, DateTime, Document};

use super::support::World;
use super::{count, server_requests};

/// Seed `n` confirmed orders and write a CSV report paying each out; returns the file.
fn seed(w: &World, n: usize, dir: &std::path::Path) -> std::path::PathBuf {
    let t = DateTime::parse_rfc3339_str("2024-01-15T04:30:00Z").expect("date");
    for start in (0..n).step_by(10_000) {
        let docs: Vec<Document> = (start..(start + 10_000).min(n))
            .map(|i| {
                doc! {
                    "merchantTransactionId": format!("SB{i:07}"), "status": "confirmed", "paymentStatus": "paid",
                    "amount": 10_000_i64 + i as i64, "items": [{ "productId": "p000", "quantity": 1 }],
                    "createdAt": t, "updatedAt": t,
                    "history": [{ "at": t, "from": "draft", "to": "confirmed", "by": "reconciler", "reason": "paid" }],
                }
            })
            .collect();
        w.block(w.db.collection::<Document>("orders").insert_many(docs))
            .expect("seed orders");
    }
    let path = dir.join("settlement.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("csv"));
    writeln!(f, "PaymentType,MerchantReferenceId,PhonePeReferenceId,From,Instrument,CreationDate,Amount,Fee,TransactionDate,SettlementDate,BankReferenceNo,IGST,CGST,SGST").unwrap();
    for i in 0..n {
        let amount = 10_000 + i as i64;
        let fee = amount * 2 / 100;
        let igst = fee * 18 / 100;
        writeln!(
            f,
            "PAYMENT,SB{i:07},T{i:09},Payer {i},UPI,15-01-2024 10:00:00,{}.{:02},-{}.{:02},15-01-2024 10:00:05,16-01-2024 09:00:00,UTR20240116,-{}.{:02},0.00,0.00",
            amount / 100, amount % 100, fee / 100, fee % 100, igst / 100, igst % 100
        )
        .unwrap();
    }
    f.flush().unwrap();
    path
}

/// One `settlement import`: (wall seconds, peak RSS KiB, database requests, stdout).
fn import(w: &World, file: &std::path::Path) -> (f64, u64, i64, String) {
    let before = server_requests(w);
    let started = Instant::now();
    let cmd = w.reconciler_command(&["settlement", "import", &file.display().to_string()]);
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-v").arg(cmd.get_program()).args(cmd.get_args());
    timed.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    let out = timed
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run /usr/bin/time -v draft-reconciler settlement import");
    let wall = started.elapsed().as_secs_f64();
    let requests = server_requests(w) - before;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {stderr}");
    let rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (wall, rss, requests, String::from_utf8_lossy(&out.stdout).to_string())
}

pub fn settlement(n: usize) {
    let w = World::new("bench_settlement");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = seed(&w, n, dir.path());
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let (wall, rss, requests, out) = import(&w, &file);
    let marked = count(&w, doc! { "reconciliation.settlement": { "$exists": true } });
    assert_eq!(marked, n as u64, "every order marked: {out}");
    println!("settlement.rows: {n}");
    println!("settlement.file_mib: {:.1}", bytes as f64 / 1_048_576.0);
    println!("settlement.import_secs: {wall:.1}");
    println!("settlement.rows_per_sec: {:.0}", n as f64 / wall);
    println!("settlement.peak_rss_mib: {:.1}", rss as f64 / 1024.0);
    println!("settlement.db_requests: {requests}");
    println!(
        "settlement.db_requests_per_1000_rows: {:.1}",
        requests as f64 * 1000.0 / n as f64
    );
    let (wall, rss, requests, out) = import(&w, &file);
    assert!(out.contains(&format!("already_imported {n}")), "{out}");
    println!("settlement.again_import_secs: {wall:.1}");
    println!("settlement.again_peak_rss_mib: {:.1}", rss as f64 / 1024.0);
    println!(
        "settlement.again_db_requests_per_1000_rows: {:.1}",
        requests as f64 * 1000.0 / n as f64
    );
}
