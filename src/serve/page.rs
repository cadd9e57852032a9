//! `GET /`: where the backup stands, as a page for operators. Plain HTML and CSS made here,
//! with no script and nothing from elsewhere, under a Content-Security-Policy that allows only
//! its own stylesheet (named by hash) and forms sent back to it. Every value is escaped.
//!
//! It reads what `oiseau status` reads (kept for [`STATUS_KEPT`], so a page reloaded in a loop
//! does not ask a cold storage's API each time), the archives from the catalog `serve` already
//! holds, and the restores `serve` asked for. It never wakes a cold archive.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::Digest;

use super::locator::ArchiveRow;
use super::{Server, parse_id};
use crate::clock::unix_now;
use crate::formats::names::archive_timestamp;
use crate::run::record;
use crate::status::{self, Status};
use crate::units::ByteSize;

/// How long the status part of the page is reused.
pub const STATUS_KEPT: Duration = Duration::from_secs(15);
/// Archives in the chart and in the table.
const CHARTED: usize = 60;
const LISTED: usize = 20;

const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:62em;padding:1em;color:#1d232a;background:#fbfbfa}\
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:0}dt{color:#57606a}dd{margin:0}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #eee}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.problem{color:#a40e26}.ok{color:#116329}.muted{color:#57606a}\
svg{width:100%;height:auto;background:#fff;border:1px solid #eee}svg .bar{fill:#4778c2}svg text{font-size:11px;fill:#57606a}\
form{margin:.3em 0}input{font:inherit;padding:.2em .4em;width:14em}button{font:inherit}";

/// The policy: nothing from anywhere, but the stylesheet above and forms sent here.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
});

/// The status part of the page and when it was made.
pub type KeptStatus = tokio::sync::Mutex<Option<(Instant, Arc<String>)>>;

/// `GET /`, and `GET /?replay=<id>` for the lookup.
pub async fn page(
    State(server): State<Arc<Server>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let now = now_status(&server).await;
    let rows = server.locator.archive_rows().await;
    let restoring: Vec<String> = server.warming.lock().await.keys().cloned().collect();
    let lookup = match query.get("replay") {
        Some(asked) => Some(lookup(&server, asked.trim()).await),
        None => None,
    };
    let mut html = String::with_capacity(32 * 1024);
    let storage = escape(&server.storage.describe());
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>oiseau: {storage}</title><style>{STYLE}</style></head><body>\
         <header><h1>oiseau</h1><p class=\"muted\">{storage}</p></header>",
    );
    html.push_str(&now);
    if !restoring.is_empty() {
        let _ = write!(
            html,
            "<p id=\"restoring\">Restores asked for by this server, pending: {}</p>",
            escape(&restoring.join(", "))
        );
    }
    history(&mut html, &rows);
    find(&mut html, query.get("replay").map(String::as_str), lookup);
    let _ = write!(
        html,
        "<footer class=\"muted\"><p>Made in {:.1} ms. <a href=\"healthz\">healthz</a></p>\
         </footer></body></html>",
        started.elapsed().as_secs_f64() * 1000.0
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&POLICY)
                    .unwrap_or(HeaderValue::from_static("default-src 'none'")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        html,
    )
        .into_response()
}

/// The "Now" section, made again at most every [`STATUS_KEPT`].
async fn now_status(server: &Server) -> Arc<String> {
    let mut kept = server.page_status.lock().await;
    if let Some((made, html)) = kept.as_ref()
        && made.elapsed() < STATUS_KEPT
    {
        return Arc::clone(html);
    }
    let report = status::inspect(&server.settings).await;
    let record = record::load(&server.settings.work_dir);
    let html = Arc::new(render_now(&report.status, &record));
    *kept = Some((Instant::now(), Arc::clone(&html)));
    html
}

fn render_now(status: &Status, record: &crate::report::events::RunRecord) -> String {
    let mut html = String::from("<section id=\"now\"><h2>Now</h2><dl>");
    let mut row = |term: &str, value: String| {
        let _ = write!(html, "<dt>{term}</dt><dd>{value}</dd>");
    };
    row(
        "Last archive made here",
        match &record.last_archive {
            Some(last) => format!(
                "{} ({} replays, {}), {}",
                escape(&last.name),
                last.replays,
                ByteSize(last.archive_bytes),
                ago(last.at)
            ),
            None => "none yet".to_owned(),
        },
    );
    row(
        "Last run",
        match &record.last_run {
            Some(run) => format!(
                "<span class=\"{}\">{}</span>, started {}, took {}",
                if run.outcome == "failed" || run.outcome.starts_with("waiting") {
                    "problem"
                } else {
                    "ok"
                },
                escape(&run.outcome),
                ago(run.started),
                humantime::format_duration(Duration::from_secs(run.seconds))
            ),
            None => "none yet".to_owned(),
        },
    );
    row(
        "Last run that ended well",
        record
            .last_success
            .map_or_else(|| "none yet".to_owned(), ago),
    );
    if let Some(since) = record.waiting_since {
        row(
            "Runs waiting for the storage",
            format!("<span class=\"problem\">since {}</span>", ago(since)),
        );
    }
    if let Some(since) = record.lock_waiting_since {
        row(
            "Runs waiting for the storage lock",
            format!(
                "<span class=\"problem\">since {}: {}</span>",
                ago(since),
                escape(record.lock_waiting_reason.as_deref().unwrap_or(""))
            ),
        );
    }
    row(
        "Run in progress",
        match status.run_in_progress {
            Some(pid) => format!("yes (pid {pid})"),
            None => "no".to_owned(),
        },
    );
    row(
        "Waiting in the temp folder",
        format!(
            "{}: {} replays, {} of the {} threshold{}{}",
            escape(&status.temp_dir),
            status.replays,
            ByteSize(status.replay_bytes),
            ByteSize(status.threshold),
            match status.oldest_age_seconds {
                Some(age) => format!(
                    "; the oldest for {}",
                    humantime::format_duration(Duration::from_secs(age))
                ),
                None => String::new(),
            },
            match status.stuck.len() {
                0 => String::new(),
                n => format!("; <span class=\"problem\">{n} can never be archived</span>"),
            }
        ),
    );
    row(
        "Storage",
        format!(
            "{}: {}{}",
            escape(&status.storage),
            escape(status.storage_state),
            status
                .storage_condition
                .as_deref()
                .map(|c| format!("; {}", escape(c)))
                .unwrap_or_default()
        ),
    );
    if let (Some(in_index), Some(on_storage)) =
        (status.archives_in_index, status.archives_on_storage)
    {
        let without = match status.archives_without_manifest {
            Some(n @ 1..) => format!(
                "; {n} without a manifest (the original tool's: <code>oiseau index legacy</code> \
                 records them)"
            ),
            _ => String::new(),
        };
        row(
            "Archives",
            format!("{in_index} in the index, {on_storage} on the storage{without}"),
        );
    }
    if let Some(last) = &status.last_archive {
        row(
            "Last archive",
            format!(
                "{} (replays up to {}){}",
                escape(last.name.as_deref().unwrap_or("missing from the storage")),
                last.max_replay_id,
                last.age_seconds
                    .map(|age| format!(
                        ", {} ago",
                        humantime::format_duration(Duration::from_secs(age))
                    ))
                    .unwrap_or_default()
            ),
        );
    }
    html.push_str("</dl>");
    if status.problems.is_empty() && status.storage_message.is_none() {
        html.push_str("<p id=\"problems\" class=\"ok\">No problem: the next run can archive.</p>");
    } else {
        html.push_str("<ul id=\"problems\">");
        for problem in status.storage_message.iter().chain(&status.problems) {
            let _ = write!(html, "<li class=\"problem\">{}</li>", escape(problem));
        }
        for stuck in &status.stuck {
            let _ = write!(
                html,
                "<li class=\"problem\">never archived as it is: {}: {}</li>",
                escape(&stuck.name),
                escape(&stuck.why)
            );
        }
        html.push_str("</ul>");
    }
    html.push_str("</section>");
    html
}

/// The chart of the last archives' sizes and the table of the last ones.
fn history(html: &mut String, rows: &[ArchiveRow]) {
    html.push_str("<section id=\"history\"><h2>History</h2>");
    let total: u64 = rows.iter().filter_map(|r| r.bytes).sum();
    let replays: u64 = rows.iter().filter_map(|r| r.replays).sum();
    let _ = write!(
        html,
        "<p>{} archives, {} in all; {} replays in the archives with a manifest.</p>",
        rows.len(),
        ByteSize(total),
        replays
    );
    if rows.is_empty() {
        html.push_str("<p>Nothing archived yet.</p></section>");
        return;
    }
    chart(html, &rows[rows.len().saturating_sub(CHARTED)..]);
    html.push_str(
        "<table id=\"archives\"><thead><tr><th class=\"n\">id</th><th>name</th>\
         <th class=\"n\">replays</th><th class=\"n\">ids up to</th><th class=\"n\">size</th>\
         <th>made</th><th>manifest</th></tr></thead><tbody>",
    );
    for row in rows.iter().rev().take(LISTED) {
        let _ = write!(
            html,
            "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            row.id,
            escape(row.name.as_deref().unwrap_or("(missing from the storage)")),
            row.replays
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            row.max_replay_id,
            row.bytes
                .map_or_else(|| "-".to_owned(), |b| ByteSize(b).to_string()),
            made(row),
            row.format.map_or_else(
                || "none (found by the index's id range)".to_owned(),
                |f| match f {
                    4 => "format 4 (recorded from the archive)".to_owned(),
                    f => format!("format {f}"),
                }
            ),
        );
    }
    html.push_str("</tbody></table></section>");
}

/// A bar per archive, its height its size, drawn by the server: readable without script.
fn chart(html: &mut String, rows: &[ArchiveRow]) {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 160.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 18.0;
    let largest = rows
        .iter()
        .filter_map(|r| r.bytes)
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = WIDTH / rows.len() as f64;
    let _ = write!(
        html,
        "<svg id=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"Size of the last {} archives\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title>Size of the last {} archives</title>\
         <text x=\"2\" y=\"11\">{}</text>",
        rows.len(),
        rows.len(),
        ByteSize(largest)
    );
    for (at, row) in rows.iter().enumerate() {
        let bytes = row.bytes.unwrap_or(0);
        let height = (HEIGHT - TOP - BOTTOM) * bytes as f64 / largest as f64;
        let _ = write!(
            html,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\">\
             <title>archive {}: {}, {} replays, {}</title></rect>",
            at as f64 * slot + slot * 0.1,
            HEIGHT - BOTTOM - height,
            slot * 0.8,
            row.id,
            ByteSize(bytes),
            row.replays
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            made(row)
        );
    }
    let (first, last) = (rows[0].id, rows[rows.len() - 1].id);
    let _ = write!(
        html,
        "<text x=\"2\" y=\"{}\">archive {first}</text>\
         <text x=\"{WIDTH}\" y=\"{}\" text-anchor=\"end\">archive {last}</text></svg>",
        HEIGHT - 4.0,
        HEIGHT - 4.0
    );
}

/// What the lookup found, as HTML.
async fn lookup(server: &Server, asked: &str) -> String {
    let id = match parse_id(asked) {
        Ok(id) => id,
        Err(why) => return format!("<p class=\"problem\">{}</p>", escape(why.trim())),
    };
    match server.locator.locate(id).await {
        Ok(Some(location)) => {
            let mut html = format!(
                "<dl id=\"found\"><dt>Replay</dt><dd>{id}</dd><dt>Archive</dt><dd>{} ({})</dd>",
                location.archive_id,
                escape(&location.archive)
            );
            match (location.size, location.hash) {
                (Some(size), Some(hash)) => {
                    let _ = write!(
                        html,
                        "<dt>Found</dt><dd>exactly, in the archive's manifest</dd>\
                         <dt>Size</dt><dd>{size} bytes</dd><dt>BLAKE3</dt><dd><code>{hash}</code></dd>"
                    );
                }
                _ => html.push_str(
                    "<dt>Found</dt><dd>by the index's id range (the archive has no manifest): \
                     the download checks no hash</dd>",
                ),
            }
            let _ = write!(
                html,
                "</dl><p><a href=\"replays/{id}\" download=\"replay_{id}.osr\">Download \
                 replay_{id}.osr</a></p>"
            );
            html
        }
        Ok(None) => format!("<p id=\"found\">Replay {id} was never archived.</p>"),
        Err(e) => format!("<p class=\"problem\">{}</p>", escape(&format!("{e:#}"))),
    }
}

fn find(html: &mut String, asked: Option<&str>, result: Option<String>) {
    let _ = write!(
        html,
        "<section id=\"find\"><h2>Find a replay</h2><form method=\"get\" action=\".\">\
         <label>Replay id <input name=\"replay\" inputmode=\"numeric\" value=\"{}\"></label> \
         <button type=\"submit\">Find</button></form>{}</section>",
        escape(asked.unwrap_or("")),
        result.unwrap_or_default()
    );
}

/// When the archive was made, from its name.
fn made(row: &ArchiveRow) -> String {
    row.name
        .as_deref()
        .and_then(archive_timestamp)
        .map(|stamp| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(stamp)).to_string()
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// `unix` seconds as "… ago".
fn ago(unix: u64) -> String {
    let now = unix_now().unwrap_or(0);
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(now.saturating_sub(unix)))
    )
}

/// Text made safe to put in HTML, in an element or an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_in_text_and_attributes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn the_policy_names_the_stylesheet_it_allows() {
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
        assert!(POLICY.contains(&format!("style-src 'sha256-{hash}'")));
        assert!(POLICY.starts_with("default-src 'none'"));
    }
}
