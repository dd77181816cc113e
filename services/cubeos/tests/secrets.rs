//! Secrets never leave their place (issue 6): a full scenario — setup, users, a login
//! through the gate, a password change, a WiFi password, an SMB password, a VPN key,
//! a device token — with a subscriber on `#` at the loopback broker and every log
//! line of `cubeos up` at debug level captured. No password, token or hash may
//! appear in any of it; the stored secrets are sealed and open only with the key.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cubeos_kit::secrets::SecretBox;
use cubeos_tests::{free_port, require};
use serde_json::{Value, json};

mod support;

use support::Guard;

struct Machine {
    data: std::path::PathBuf,
    mqtt: u16,
    gate: u16,
}

impl Machine {
    fn cubeos(&self, data: &Path, home: &Path) -> Command {
        let mut cmd = Command::new(support::bin());
        cmd.arg("--data")
            .arg(data)
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .env("CUBEOS__BROKER__TCP_LISTEN", format!("127.0.0.1:{}", self.mqtt))
            .env("CUBEOS__BROKER__ADDRESS", format!("127.0.0.1:{}", self.mqtt))
            .env("CUBEOS__GATE__TCP_LISTEN", format!("127.0.0.1:{}", self.gate))
            .env("CUBEOS__GATE__ADDRESS", format!("127.0.0.1:{}", self.gate))
            .env("CUBEOS__GATE__WS_LISTEN", "127.0.0.1:0")
            .env("CUBEOS__DASHBOARD__LISTEN", "127.0.0.1:0")
            .env("CUBEOS__ORCHESTRATOR__DEPLOY_CORE_APPS", "false");
        cmd
    }

    /// Runs a CLI command with `stdin`, asserting success; returns stdout.
    fn cli(&self, data: &Path, home: &Path, args: &[&str], stdin: &str) -> String {
        let mut child = self
            .cubeos(data, home)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cli");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Sends one command through the gate, as the dashboard would, and returns the reply.
fn through_gate(gate: u16, user: &str, password: &str, action: &str, args: Value) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut config = cubeos_kit::Config::default();
        config.broker.address = std::net::SocketAddr::from(([127, 0, 0, 1], gate));
        let options = cubeos_kit::BusOptions::new(&config, format!("dash-{}", free_port()), user, password);
        let bus = cubeos_kit::Bus::connect(options).await.expect("signs in at the gate");
        let reply = bus.request("registry", action, &args).await;
        bus.shutdown().await;
        serde_json::to_value(cubeos_contract::envelope::ReplyEnvelope::from_result(
            String::new(),
            reply,
        ))
        .unwrap()
    })
}

#[test]
fn no_secret_reaches_a_message_or_a_log_line() {
    if !require("no_secret_reaches", "mosquitto_sub") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let the_box = Machine {
        data: dir.path().join("data"),
        mqtt: free_port(),
        gate: free_port(),
    };
    let home = dir.path().join("home");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&home).unwrap();
    let log_path = dir.path().join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _up = Guard(
        the_box
            .cubeos(&the_box.data, &home)
            .arg("up")
            .env("CUBEOS__LOG__LEVEL", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .matches("service ready")
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "cubeos up did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let creds: Value =
        serde_json::from_slice(&std::fs::read(the_box.data.join("broker-credentials.json")).unwrap()).unwrap();
    let service_password = creds["password"].as_str().unwrap().to_owned();
    let everything = dir.path().join("everything.txt");
    let _sub = Guard(
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &the_box.mqtt.to_string(),
                "-u",
                "cubeos-service",
            ])
            .args(["-P", &service_password, "-t", "#", "-v"])
            .stdout(std::fs::File::create(&everything).unwrap())
            .spawn()
            .unwrap(),
    );
    // Subscribed once the retained state arrives.
    while std::fs::metadata(&everything).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "mosquitto_sub saw no retained state");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (root_pw, ann_pw, ann_pw2) = ("Root-Secret-1111", "Ann-Secret-2222", "Ann-Secret-3333");
    let (wifi_pw, smb_pw, vpn_key) = ("Wifi-Secret-4444", "Smb-Secret-5555", "Vpn-Secret-6666");
    let data = the_box.data.as_path();
    the_box.cli(
        data,
        &home,
        &["setup", "-u", "root", "--password-stdin"],
        &format!("{root_pw}\n"),
    );
    the_box.cli(
        data,
        &home,
        &["user", "add", "ann", "--role", "user", "--password-stdin"],
        &format!("{ann_pw}\n"),
    );
    // Ann, from a machine without the data dir, signs in through the gate.
    the_box.cli(
        &elsewhere,
        &home,
        &["login", "-u", "ann", "--password-stdin"],
        &format!("{ann_pw}\n"),
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(home.join(".config/cubeos/login.json")).unwrap()).unwrap();
    let session_token = saved["token"].as_str().unwrap().to_owned();
    assert!(session_token.starts_with("cubeos_"));
    let ls = the_box.cli(&elsewhere, &home, &["app", "ls"], "");
    assert!(ls.contains("NAME"));
    the_box.cli(
        &elsewhere,
        &home,
        &["user", "passwd", "--password-stdin"],
        &format!("{ann_pw}\n{ann_pw2}\n"),
    );

    // The dashboard's admin sets the secrets through the gate.
    let r = through_gate(
        the_box.gate,
        "root",
        root_pw,
        "network.set",
        json!({ "wifi_ssid": "home", "wifi_password": wifi_pw }),
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data"]["wifi_password_set"], true);
    let r = through_gate(
        the_box.gate,
        "root",
        root_pw,
        "mount.add",
        json!({ "name": "nas", "type": "smb", "remote_path": "//nas/share", "username": "me", "password": smb_pw }),
    );
    assert_eq!(r["ok"], true, "{r}");
    let r = through_gate(
        the_box.gate,
        "root",
        root_pw,
        "vpn.add",
        json!({ "name": "wg0", "type": "wireguard", "secret": vpn_key }),
    );
    assert_eq!(r["ok"], true, "{r}");
    let issued = the_box.cli(data, &home, &["token", "issue", "device", "button-1"], "");
    let device_token = issued.lines().last().unwrap().trim().to_owned();
    assert!(device_token.starts_with("cubeos_"), "{issued}");
    let pubbed = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &the_box.gate.to_string(),
            "-u",
            "button-1",
            "-P",
            &device_token,
        ])
        .args(["-t", "cubeos/hw/button-1/press", "-m", "1"])
        .status()
        .unwrap();
    assert!(pubbed.success());
    the_box.cli(&elsewhere, &home, &["logout"], "");
    std::thread::sleep(Duration::from_millis(500));

    // Stored secrets: sealed, and they open with the data dir's key.
    let key = SecretBox::load(&the_box.data.join("secret.key")).unwrap();
    let db = the_box.data.join("cubeos.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (wifi, smb, vpn, hashes, token_hashes) = rt.block_on(async {
        use sqlx::{ConnectOptions, sqlite::SqliteConnectOptions};
        let mut conn = SqliteConnectOptions::new()
            .filename(&db)
            .read_only(true)
            .connect()
            .await
            .unwrap();
        let wifi: String = sqlx::query_scalar("SELECT wifi_password FROM network_config")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let smb: String = sqlx::query_scalar("SELECT password FROM mounts")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let vpn: String = sqlx::query_scalar("SELECT secret FROM vpn_configs")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let hashes: Vec<String> = sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let token_hashes: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM tokens")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        (wifi, smb, vpn, hashes, token_hashes)
    });
    for (stored, plain) in [(&wifi, wifi_pw), (&smb, smb_pw), (&vpn, vpn_key)] {
        assert!(stored.starts_with("sealed:v1:"), "{stored}");
        assert_eq!(key.open(stored).unwrap().as_str(), plain);
    }
    assert!(hashes.iter().all(|h| h.starts_with("$argon2id$")), "{hashes:?}");

    let captured = format!(
        "{}\n{}",
        std::fs::read_to_string(&everything).unwrap(),
        std::fs::read_to_string(&log_path).unwrap()
    );
    assert!(
        captured.contains("cubeos/cmd/registry/network.set"),
        "the subscriber saw the traffic"
    );
    assert!(captured.contains("sealed:v1:"), "secrets crossed the bus sealed");
    let mut secrets: Vec<String> = [root_pw, ann_pw, ann_pw2, wifi_pw, smb_pw, vpn_key]
        .iter()
        .map(|s| s.to_string())
        .collect();
    secrets.extend([session_token, device_token, service_password]);
    secrets.extend(hashes);
    secrets.extend(token_hashes);
    for secret in &secrets {
        assert!(
            !captured.contains(secret.as_str()),
            "a secret leaked: {}...",
            &secret[..6]
        );
    }
}
