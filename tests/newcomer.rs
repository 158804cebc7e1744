//! What a newcomer tripped over (issue 22), each with the command that showed it: the text
//! table's ID column (what `--session` takes), a key log that matches nothing, the pipe example
//! in `--help`, `probe --help`'s default list, and where `--html` wrote its page.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_text_table_shows_the_id_that_session_takes() {
    let o = run(&["analyze", "fixtures/many-sessions.pcap"]);
    let text = stdout(&o);
    let mut lines = text.lines().skip_while(|l| !l.starts_with("ID "));
    let header = lines.next().unwrap_or_else(|| panic!("an ID column: {text}"));
    assert!(header.starts_with("ID  CLIENT  "), "{header}");
    let first = lines.next().unwrap();
    let mut cells = first.split_whitespace();
    let (id, client_id) = (cells.next().unwrap(), cells.nth(1).unwrap());
    let t = run(&["analyze", "--session", id, "fixtures/many-sessions.pcap"]);
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let timeline = stdout(&t);
    assert!(timeline.contains(client_id) && timeline.contains("keepalive_expired"), "{first}\n{timeline}");
}

#[test]
fn a_key_log_that_matches_no_session_is_warned_about_and_the_table_says_not_decrypted() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.keys");
    std::fs::write(&wrong, format!("CLIENT_HANDSHAKE_TRAFFIC_SECRET {} {}\n", "ab".repeat(32), "cd".repeat(32)))
        .unwrap();
    let wrong = wrong.to_str().unwrap();
    let o = run(&["analyze", "--tls-keylog", wrong, "fixtures/tls/tls13-keepalive5-silent.pcap"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("warning: the TLS key log matched no TLS session"), "{text}");
    assert!(text.contains("(TLS not decrypted)"), "{text}");
    let o = run(&["analyze", "-f", "json", "--tls-keylog", wrong, "fixtures/tls/tls13-keepalive5-silent.pcap"]);
    // Formats for scripts carry it in their summary, and say it on stderr for the person.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("warning: the TLS key log matched no TLS session"), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (json["summary"]["tls_sessions"].as_u64(), json["summary"]["tls_no_key_log_line"].as_u64()),
        (Some(1), Some(1))
    );
    // Without a key log: encrypted, said so in the table, but no key log to warn about.
    let text = stdout(&run(&["analyze", "fixtures/tls/tls13-keepalive5-silent.pcap"]));
    assert!(text.contains("(TLS not decrypted)") && !text.contains("key log matched"), "{text}");
    // With the right one: decrypted, the client id shown, no warning.
    let text = stdout(&run(&[
        "analyze",
        "--tls-keylog",
        "fixtures/tls/tls13-keepalive5-silent.keys",
        "fixtures/tls/tls13-keepalive5-silent.pcap",
    ]));
    assert!(text.contains("  tls-silent-5  ") && !text.contains("warning"), "{text}");
}

#[test]
fn the_pipe_example_uses_immediate_mode() {
    let help = stdout(&run(&["analyze", "--help"]));
    assert!(
        help.contains("tcpdump -i eth0 -U --immediate-mode -w - 'tcp port 1883' | mqtt-keepalive analyze"),
        "{help}"
    );
    let help = stdout(&run(&["top", "--help"]));
    assert!(help.contains("--immediate-mode -w - 'tcp port 1883' | mqtt-keepalive top -"), "{help}");
}

#[test]
fn probe_help_shows_the_default_keepalives_as_the_option_takes_them() {
    let help = stdout(&run(&["probe", "--help"]));
    assert!(help.contains("[default: 1,2,3,5,10]"), "{help}");
}

#[test]
fn html_says_where_it_wrote_with_a_legend_for_every_mark() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("timeline.html");
    let o = run(&["analyze", "--html", page.to_str().unwrap(), "fixtures/classic-keepalive5-silent.pcap"]);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&format!("wrote the HTML timeline to {}", page.display())), "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    let legend = html.split("<span class=\"legend\">").nth(1).unwrap().split("</div>").next().unwrap();
    assert!(legend.contains("k-close_without_disconnect") && legend.contains("close without DISCONNECT"), "{legend}");
    assert!(legend.contains("after-close"), "{legend}");
    assert!(html.contains("1 expiry, 1 broker close,"), "singular counts");
    assert!(!html.contains("1 expiries"));
}

#[test]
fn top_needs_a_terminal_and_says_so() {
    let o = run(&["top", "fixtures/classic-keepalive5-silent.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("top draws on a terminal"));
    let o = run(&["top", "https://localhost:9883"]);
    assert_eq!(o.status.code(), Some(2), "https is not served by the agent");
}
