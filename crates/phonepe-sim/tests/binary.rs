//! The `phonepe-sim` binary as `scripts/demo.sh` runs it: flags and the salt key from the
//! environment are what it serves with, it prints the base URL it bound, and it answers the admin
//! API and a signed status call there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Kills the simulator when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn x_verify(path: &str, salt_key: &str) -> String {
    format!(
        "{}###1",
        hex::encode(Sha256::digest(format!("{path}{salt_key}").as_bytes()))
    )
}

#[tokio::test]
async fn the_binary_serves_its_flags_on_the_printed_url() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonepe-sim"))
        .args(["--listen", "127.0.0.1:0", "--merchant-id", "DEMOMERCHANT"])
        .args(["--prefix", "/apis/hermes", "--rate-limit-per-minute", "0"])
        .env("PHONEPE_SALT_KEY", "salt-from-env")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start phonepe-sim");
    let stdout = child.stdout.take().expect("stdout");
    let sim = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the first line");
    let base = line
        .trim()
        .strip_prefix("phonepe-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let root = base.strip_suffix("/apis/hermes").expect("the prefix ends the base URL");
    let http = reqwest::Client::new();

    let config: Value = http
        .get(format!("{root}/__sim/config"))
        .send()
        .await
        .expect("config")
        .json()
        .await
        .expect("config JSON");
    assert_eq!(
        (&config["merchantId"], &config["rateLimitPerMinute"]),
        (&json!("DEMOMERCHANT"), &Value::Null)
    );
    assert!(
        !config.to_string().contains("salt-from-env"),
        "the salt key is never shown"
    );

    let script = json!({"answers": [{"state": "COMPLETED", "amount": 49900}]});
    let r = http
        .put(format!("{root}/__sim/transactions/ORD-1"))
        .json(&script)
        .send()
        .await
        .expect("script");
    assert_eq!(r.status(), 200);

    let path = "/pg/v1/status/DEMOMERCHANT/ORD-1";
    let status = |salt: &'static str| {
        http.get(format!("{base}{path}"))
            .header("X-MERCHANT-ID", "DEMOMERCHANT")
            .header("X-VERIFY", x_verify(path, salt))
            .send()
    };
    let paid = status("salt-from-env").await.expect("status call");
    assert_eq!(paid.status(), 200);
    let paid: Value = paid.json().await.expect("status JSON");
    assert_eq!(
        (&paid["code"], &paid["data"]["amount"], &paid["data"]["merchantId"]),
        (&json!("PAYMENT_SUCCESS"), &json!(49900), &json!("DEMOMERCHANT"))
    );
    let refused = status("test-salt-key").await.expect("status call");
    assert_eq!(refused.status(), 401, "the default salt key is not the one served");
    drop(sim);
}
