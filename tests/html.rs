//! The HTML timeline (`analyze --html FILE`, `-f html`): every session and every event of the JSON
//! report drawn at its place on the shared time axis, checked on the page's markup for every
//! fixture and, with headless Chromium (`#[ignore]`d: CI installs the `chromium` package), through
//! the DOM of the page as a real browser lays it out, with a screenshot of each fixture kept
//! under `target/html-screenshots/` (not compared). Also: the page fetches nothing, escapes client
//! ids, never shows a password, and aggregates sessions beyond `--top`.

mod common;

use common::fixture;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::synth::{Capture, Conn, Encap, mqtt};
use mqtt_keepalive::time::Timestamp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
}

/// Every capture in `fixtures/`.
fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "{v:?}");
    v
}

/// The JSON document, the JSON-lines events and the page of one capture (`--html` next to `-f json`).
struct Analysed {
    doc: Value,
    events: Vec<Value>,
    page: String,
}

fn analyse(path: &Path, extra: &[&str], dir: &Path) -> Analysed {
    let html = dir.join("report.html");
    let o = bin().args(["analyze", "-f", "json", "--html"]).arg(&html).args(extra).arg(path).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = bin().args(["analyze", "-f", "jsonl"]).args(extra).arg(path).output().unwrap();
    assert!(o.status.success());
    let events = String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    Analysed { doc, events, page: std::fs::read_to_string(&html).unwrap() }
}

/// A lane as drawn: its track's left edge and width, and its markers' centres, in one unit.
#[derive(Debug)]
struct DrawnLane {
    session: u64,
    client_id: String,
    verdict: String,
    left: f64,
    width: f64,
    /// (kind, ts, x)
    marks: Vec<(String, f64, f64)>,
    /// Enforcement lag bars: (from, to, left, right).
    lags: Vec<(f64, f64, f64, f64)>,
    /// Client packets drawn as ticks.
    activity: u64,
}

/// Checks that every session of the JSON report has its lane, and that every event of the
/// report (the sessions' `events` and every ping of the JSON-lines stream) is drawn, with its
/// kind and time, at `(ts - first_ts) / (last_ts - first_ts)` of the lane's width (within `tol`).
fn check_drawn(a: &Analysed, lanes: &[DrawnLane], tol: f64, what: &str) {
    let t0 = a.doc["capture"]["first_ts"].as_f64().unwrap();
    let t1 = a.doc["capture"]["last_ts"].as_f64().unwrap();
    let sessions = a.doc["sessions"].as_array().unwrap();
    assert_eq!(lanes.len(), sessions.len(), "{what}: one lane per session");
    let mut checked = 0;
    for s in sessions {
        let id = s["id"].as_u64().unwrap();
        let lane = lanes.iter().find(|l| l.session == id).unwrap_or_else(|| panic!("{what}: no lane for session {id}"));
        assert_eq!(lane.client_id, s["client_id"].as_str().unwrap_or(""), "{what}: session {id}");
        assert_eq!(lane.verdict, s["enforcement"]["verdict"].as_str().unwrap_or("none"), "{what}: session {id}");
        assert!(lane.width > 100.0 || tol < 0.01, "{what}: lane {id} has a visible width");
        let x = |ts: f64| lane.left + (ts - t0) / (t1 - t0) * lane.width;
        // Expected events: listed ones plus pings (from the stream), as (kind, ts) multisets.
        let mut expected: Vec<(String, f64)> = s["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["kind"].as_str().unwrap().to_string(), e["ts"].as_f64().unwrap()))
            .collect();
        expected.extend(
            a.events
                .iter()
                .filter(|e| e["session"] == id && matches!(e["kind"].as_str(), Some("pingreq" | "pingresp")))
                .map(|e| (e["kind"].as_str().unwrap().to_string(), e["ts"].as_f64().unwrap())),
        );
        assert_eq!(s["events_dropped"], 0, "{what}: fixtures list every event");
        let mut drawn: Vec<&(String, f64, f64)> = lane.marks.iter().filter(|(k, _, _)| k != "deadline").collect();
        assert_eq!(drawn.len(), expected.len(), "{what}: session {id}: drawn {drawn:?}, expected {expected:?}");
        for (kind, ts) in &expected {
            let i = drawn
                .iter()
                .position(|(k, t, _)| k == kind && (t - ts).abs() < 1e-6)
                .unwrap_or_else(|| panic!("{what}: session {id}: {kind} at {ts} not drawn"));
            let (_, _, at) = drawn.remove(i);
            assert!(
                (at - x(*ts)).abs() <= tol,
                "{what}: session {id}: {kind} at {ts} drawn at {at}, axis says {}",
                x(*ts)
            );
            checked += 1;
        }
        // Client packets are drawn: at least its PINGREQs once the keepalive is known.
        if s["effective_keepalive_s"].as_u64().is_some_and(|k| k > 0) {
            assert!(lane.activity >= s["pingreq"].as_u64().unwrap(), "{what}: session {id}: client packets");
        }
        // Deadlines are drawn where their times say, too.
        for (kind, ts, at) in lane.marks.iter().filter(|(k, _, _)| k == "deadline") {
            assert!((at - x(*ts)).abs() <= tol, "{what}: session {id}: {kind} at {ts}");
        }
        // A session expired and closed by the broker shows its lag from the deadline to the close.
        if matches!(s["enforcement"]["verdict"].as_str(), Some("on_time" | "late")) {
            let ev = |k: &str| expected.iter().find(|(kind, _)| kind == k).map(|(_, t)| *t).unwrap();
            let (deadline, close) = (ev("keepalive_expired"), ev("close"));
            assert_eq!(lane.lags.len(), 1, "{what}: session {id}: the enforcement lag");
            let (from, to, l, r) = lane.lags[0];
            assert_eq!((from, to), (deadline, close), "{what}: session {id}");
            assert!((l - x(deadline)).abs() <= tol && (r - x(close)).abs() <= tol, "{what}: session {id}: lag bar");
        } else {
            assert!(lane.lags.is_empty(), "{what}: session {id}");
        }
    }
    assert!(checked > 0);
}

/// Attribute `name` of the first tag in `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The lanes as the markup states them (positions in percent of the track).
fn lanes_in_markup(page: &str) -> Vec<DrawnLane> {
    let pct = |v: &str| v.strip_suffix('%').unwrap().parse::<f64>().unwrap();
    page.split("<details class=\"lane")
        .skip(1)
        .map(|chunk| {
            let chunk = &chunk[..chunk.find("</summary>").unwrap()];
            let head = &chunk[..chunk.find('>').unwrap()];
            let tags = chunk.split('<').filter(|t| t.contains("data-kind=\""));
            let marks = tags
                .map(|t| {
                    let x = attr(t, "cx").or(attr(t, "x1")).map(pct).unwrap();
                    (attr(t, "data-kind").unwrap().to_string(), attr(t, "data-ts").unwrap().parse().unwrap(), x)
                })
                .collect();
            let lags = chunk
                .split('<')
                .filter(|t| t.starts_with("rect class=\"lag\""))
                .map(|t| {
                    let (x, w) = (pct(attr(t, "x").unwrap()), pct(attr(t, "width").unwrap()));
                    let num = |n| attr(t, n).unwrap().parse().unwrap();
                    (num("data-from"), num("data-to"), x, x + w)
                })
                .collect();
            DrawnLane {
                session: attr(head, "data-session").unwrap().parse().unwrap(),
                client_id: unescape(attr(head, "data-client-id").unwrap()),
                verdict: attr(head, "data-verdict").unwrap().to_string(),
                left: 0.0,
                width: 100.0,
                marks,
                lags,
                activity: chunk
                    .split('<')
                    .find(|t| t.starts_with("path class=\"activity\""))
                    .map_or(0, |t| attr(t, "data-count").unwrap().parse().unwrap()),
            }
        })
        .collect()
}

#[test]
fn every_session_and_event_of_every_fixture_is_in_the_markup_at_its_time() {
    let dir = tempfile::tempdir().unwrap();
    for path in fixtures() {
        let a = analyse(&path, &[], dir.path());
        check_drawn(&a, &lanes_in_markup(&a.page), 0.0005, &path.display().to_string());
        check_details(&a, &path.display().to_string());
    }
}

/// The lane's markup (its `<details>` element) of session `id`.
fn lane_markup(page: &str, id: u64) -> &str {
    let start = page.find(&format!("data-session=\"{id}\"")).unwrap();
    &page[start..start + page[start..].find("</details>").unwrap()]
}

/// The hover text of the marker of `kind` at `ts` in a lane.
fn title_of<'a>(lane: &'a str, kind: &str, ts: f64) -> &'a str {
    let tag = lane
        .split('<')
        .position(|t| {
            attr(t, "data-kind") == Some(kind) && attr(t, "data-ts").and_then(|v| v.parse::<f64>().ok()) == Some(ts)
        })
        .unwrap_or_else(|| panic!("{kind} at {ts}"));
    let t = lane.split('<').nth(tag + 1).unwrap();
    t.strip_prefix("title>").unwrap()
}

/// What hovering and the fields table show, and the order of the lanes.
fn check_details(a: &Analysed, what: &str) {
    let sessions = a.doc["sessions"].as_array().unwrap();
    // Round trips on hover, from the event stream.
    for e in a.events.iter().filter(|e| e["kind"] == "pingresp") {
        let lane = lane_markup(&a.page, e["session"].as_u64().unwrap());
        let title = title_of(lane, "pingresp", e["ts"].as_f64().unwrap());
        if let Some(rtt) = e["rtt_ms"].as_f64() {
            assert!(title.contains(&format!("round trip {rtt:.3} ms")), "{what}: {title}");
        }
    }
    for s in sessions {
        let id = s["id"].as_u64().unwrap();
        let lane = lane_markup(&a.page, id);
        for e in s["events"].as_array().unwrap() {
            let ts = e["ts"].as_f64().unwrap();
            match e["kind"].as_str().unwrap() {
                // The close: kind, side, DISCONNECT reason.
                "close" => {
                    let title = title_of(lane, "close", ts);
                    let want = format!("close: {} by {}", e["close"].as_str().unwrap(), e["by"].as_str().unwrap());
                    assert!(title.starts_with(&want), "{what}: {title}");
                    if let Some(code) = e["reason_code"].as_u64() {
                        assert!(title.contains(&format!("reason 0x{code:02x}")), "{what}: {title}");
                    }
                }
                // The deadline line where it passed, and the silence up to the close shaded as past it.
                "keepalive_expired" => {
                    title_of(lane, "deadline", ts);
                    let last = e["last_activity"].as_f64().unwrap();
                    let silence = lane
                        .split('<')
                        .find(|t| {
                            t.starts_with("rect class=\"silence\"")
                                && attr(t, "data-from").unwrap().parse::<f64>().unwrap() == last
                        })
                        .unwrap_or_else(|| panic!("{what}: session {id}: the silence from {last}"));
                    assert!(attr(silence, "data-ratio").unwrap().parse::<f64>().unwrap() >= 1.0, "{what}: {silence}");
                    assert!(attr(silence, "fill").unwrap().starts_with("hsl(0,"), "{what}: red at the limit");
                }
                _ => {}
            }
        }
        // The session's fields, as in the JSON report.
        let fields = &lane[lane.find("<table class=\"fields\">").unwrap()..];
        for (k, v) in s.as_object().unwrap() {
            let shown = match v {
                Value::String(x) => x.clone(),
                Value::Null => "-".into(),
                Value::Array(_) if k == "events" => continue,
                v => v.to_string(),
            };
            let row = format!(
                "<tr><th>{k}</th><td>{}</td></tr>",
                shown.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
            );
            assert!(fields.contains(&row), "{what}: session {id}: {row}");
        }
    }
    // Most severe first.
    let order: Vec<u8> = a.page.split("<details class=\"lane sev").skip(1).map(|c| c[..1].parse().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "{what}: {order:?}");
}

#[test]
fn the_page_on_standard_output_is_the_html_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture("classic-keepalive5-silent.pcap");
    let a = analyse(&path, &[], dir.path());
    let o = bin().args(["analyze", "-f", "html"]).arg(&path).output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stdout).unwrap(), a.page);
    // The text table still goes to standard output next to --html.
    let o = bin().args(["analyze", "--html"]).arg(dir.path().join("x.html")).arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("silent-5"));
    assert!(dir.path().join("x.html").exists());
    let o = bin().args(["analyze", "--html", "/nonexistent-dir/x.html"]).arg(&path).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent-dir/x.html"));
}

/// A capture whose client id is markup, keepalive 1, silent, closed late by the broker.
fn hostile_capture() -> Vec<u8> {
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:1883".parse().unwrap(), 1, 1);
    let t = |s: f64| Timestamp::from_secs_f64(1_700_000_000.0 + s);
    conn.handshake(&mut cap, t(0.0));
    let id = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    conn.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 1, id, true, Some(("user", "hunter2-secret"))));
    conn.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
    conn.fin(&mut cap, t(3.0), Side::Broker);
    cap.to_pcap()
}

#[test]
fn the_page_is_self_contained_escapes_client_ids_and_hides_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.pcap");
    std::fs::write(&path, hostile_capture()).unwrap();
    let a = analyse(&path, &[], dir.path());
    assert_eq!(a.doc["sessions"][0]["client_id"], "\"><script>alert(1)</script><img src=x onerror=alert(2)>");
    let page = &a.page;
    assert_eq!(page.matches("<script").count(), 1, "only the page's own script");
    assert!(!page.contains("<img") && !page.contains("alert(1)</script>"), "client id as markup");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!page.contains("hunter2"), "passwords never appear");
    assert!(page.contains("default-src 'none'"), "a policy forbids fetching anything");
    // And there is nothing to fetch.
    let page = &analyse(&fixture("many-sessions.pcap"), &[], dir.path()).page;
    for fetch in ["http:", "https:", "src=", "href=", "url(", "@import", "//"] {
        let found: Vec<&str> = page.match_indices(fetch).map(|(i, _)| &page[i.saturating_sub(40)..i + 20]).collect();
        assert!(found.is_empty(), "the page fetches nothing: {fetch} in {found:?}");
    }
    let lanes = lanes_in_markup(&a.page);
    assert_eq!(lanes[0].client_id, a.doc["sessions"][0]["client_id"].as_str().unwrap());
    assert_eq!(lanes[0].verdict, "late");
    // The fixture with a password on the wire.
    let a = analyse(&fixture("any-sll2.pcapng"), &[], dir.path());
    assert!(a.page.contains("with-credentials") && !a.page.contains("S3cr3t"));
}

#[test]
fn sessions_beyond_top_are_aggregated_by_severity() {
    let dir = tempfile::tempdir().unwrap();
    let a = analyse(&fixture("many-sessions.pcap"), &["--top", "3"], dir.path());
    let lanes = lanes_in_markup(&a.page);
    assert_eq!(lanes.len(), 3);
    // The three drawn are the most severe: expired and closed late.
    assert!(lanes.iter().all(|l| l.verdict == "late"), "{lanes:?}");
    let mut counts: BTreeMap<u8, u64> = BTreeMap::new();
    for row in a.page.split("<div class=\"row aggregate").skip(1) {
        let head = &row[..row.find('>').unwrap()];
        counts.insert(
            attr(head, "data-severity").unwrap().parse().unwrap(),
            attr(head, "data-count").unwrap().parse().unwrap(),
        );
    }
    assert_eq!(counts.values().sum::<u64>(), 27, "{counts:?}");
    assert_eq!(counts.get(&5), Some(&5), "the other 5 late ones");
    // The capture strip counts every session's expiries, drawn or not.
    assert!(a.page.contains("8 expiries, 8 broker closes"), "strip");
}

// ---- in a real browser ----

/// Headless Chromium with a fresh profile; `args` go before the page's URL.
fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let o = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed");
    assert!(o.status.success(), "chromium: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Measures, in the laid-out page, each lane's track and each marker's centre (CSS pixels), then
/// tries the client id filter and the zoom; writes the results as JSON into `<pre id=measured>`.
const MEASURE: &str = r#"<script>
(function(){
  function box(e){var b=e.getBoundingClientRect();return b;}
  var out={lanes:[]};
  document.querySelectorAll('details.lane').forEach(function(l){
    var t=box(l.querySelector('svg.track'));
    var lane={session:+l.getAttribute('data-session'),client_id:l.getAttribute('data-client-id'),
      verdict:l.getAttribute('data-verdict'),left:t.left,width:t.width,top:t.top,height:t.height,marks:[],lags:[]};
    l.querySelectorAll('svg.track [data-kind]').forEach(function(m){var b=box(m);
      lane.marks.push([m.getAttribute('data-kind'),+m.getAttribute('data-ts'),b.left+b.width/2,b.top+b.height/2]);});
    var act=l.querySelector('svg.track path.activity');
    lane.activity=act&&act.getBoundingClientRect().height>0?+act.getAttribute('data-count'):0;
    l.querySelectorAll('svg.track rect.lag').forEach(function(m){var b=box(m);
      lane.lags.push([+m.getAttribute('data-from'),+m.getAttribute('data-to'),b.left,b.right]);});
    out.lanes.push(lane);
  });
  var first=document.querySelector('details.lane');
  if(first){
    var q=document.getElementById('q');q.value=first.getAttribute('data-client-id');q.dispatchEvent(new Event('input'));
    out.visible_after_filter=[].filter.call(document.querySelectorAll('details.lane'),function(l){return l.offsetParent!==null;})
      .map(function(l){return l.getAttribute('data-client-id');});
    q.value='';q.dispatchEvent(new Event('input'));
    var m=first.querySelector('svg.track [data-kind="connect"],svg.track [data-kind="pingreq"]');
    if(m){var z=document.getElementById('zoom');z.value='2';z.dispatchEvent(new Event('input'));
      var b=box(m);out.zoomed={ts:+m.getAttribute('data-ts'),x:b.left+b.width/2};z.value='1';z.dispatchEvent(new Event('input'));}
  }
  var pre=document.createElement('pre');pre.id='measured';pre.textContent=JSON.stringify(out);document.body.appendChild(pre);
})();
</script>"#;

#[test]
#[ignore = "needs chromium (Debian package `chromium`)"]
fn a_real_browser_draws_every_session_and_event_of_every_fixture_at_its_time() {
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/html-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for path in fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let a = analyse(&path, &[], dir.path());
        let page = dir.path().join("report.html");

        // The page as it is: loads, renders, and its DOM has every lane.
        let shot = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&shot);
        chromium(&[&format!("--screenshot={}", shot.display())], &page);
        assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "{name}: screenshot");
        let dom = String::from_utf8(chromium(&["--dump-dom"], &page).stdout).unwrap();
        assert_eq!(dom.matches("<details class=\"lane").count(), a.doc["sessions"].as_array().unwrap().len());

        // Measured in the laid-out page.
        let measured = dir.path().join("measured.html");
        std::fs::write(&measured, a.page.replace("</body>", &format!("{MEASURE}</body>"))).unwrap();
        let dom = String::from_utf8(chromium(&["--dump-dom"], &measured).stdout).unwrap();
        let start = dom.find("<pre id=\"measured\">").unwrap_or_else(|| panic!("{name}: not measured")) + 19;
        let m: Value =
            serde_json::from_str(&unescape(&dom[start..start + dom[start..].find("</pre>").unwrap()])).unwrap();
        let lanes: Vec<DrawnLane> = m["lanes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let (top, height) = (l["top"].as_f64().unwrap(), l["height"].as_f64().unwrap());
                let marks = l["marks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        let y = m[3].as_f64().unwrap();
                        assert!(y >= top && y <= top + height, "{name}: {m} inside its lane ({top}+{height})");
                        (m[0].as_str().unwrap().to_string(), m[1].as_f64().unwrap(), m[2].as_f64().unwrap())
                    })
                    .collect();
                let lags = l["lags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| {
                        (g[0].as_f64().unwrap(), g[1].as_f64().unwrap(), g[2].as_f64().unwrap(), g[3].as_f64().unwrap())
                    })
                    .collect();
                DrawnLane {
                    session: l["session"].as_u64().unwrap(),
                    client_id: l["client_id"].as_str().unwrap().to_string(),
                    verdict: l["verdict"].as_str().unwrap().to_string(),
                    left: l["left"].as_f64().unwrap(),
                    width: l["width"].as_f64().unwrap(),
                    marks,
                    lags,
                    activity: l["activity"].as_u64().unwrap(),
                }
            })
            .collect();
        check_drawn(&a, &lanes, 0.6, &name);

        // The filter shows the lanes whose client id matches; zoom x2 doubles the distance from t0.
        let first = &lanes[0];
        let visible: Vec<&str> =
            m["visible_after_filter"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(
            !visible.is_empty() && visible.iter().all(|c| c.contains(first.client_id.as_str())),
            "{name}: {visible:?}"
        );
        if let Some(z) = m.get("zoomed") {
            let t0 = a.doc["capture"]["first_ts"].as_f64().unwrap();
            let t1 = a.doc["capture"]["last_ts"].as_f64().unwrap();
            let want = first.left + 2.0 * (z["ts"].as_f64().unwrap() - t0) / (t1 - t0) * first.width;
            assert!((z["x"].as_f64().unwrap() - want).abs() < 1.0, "{name}: zoom: {z} vs {want}");
        }
    }
}
