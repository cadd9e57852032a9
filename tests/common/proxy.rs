//! A TCP fault proxy on loopback, in front of a test server: the network failing in the ways
//! a real one does, between oiseau and a real server. It forwards each connection to the
//! server, and by its [`Plan`] resets every k-th connection at once, lets a matched request
//! reach the server and then resets before the answer (the write applied, its answer lost),
//! cuts the answers to matched requests after so many bytes, or paces both directions to a
//! slow steady rate. An FTP server's passive data connections go through it too: each
//! passive-mode reply is rewritten to a port of the proxy that relays it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does to the connections it forwards from now on.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every k-th connection (counted from 1) is reset before anything is forwarded.
    pub drop_every: Option<usize>,
    /// The next request whose bytes contain this text reaches the server, then its connection
    /// is reset before the answer comes back; once.
    pub lose_answer_to: Option<String>,
    /// Answers to requests holding this text are reset after so many bytes, for the next so
    /// many such requests.
    pub cut_answers: Option<Cut>,
    /// Bytes a second, each direction.
    pub rate: Option<u64>,
    /// FTP's passive data connections that carry more than so many bytes from the server are
    /// cut there, so many times (downloads broken mid-body).
    pub cut_passive: Option<(usize, usize)>,
    /// The next request holding this text stops being forwarded after its first bytes, its
    /// connection left open (a link that stalls); once, or every time with `stall_always`.
    pub stall_request_with: Option<String>,
    pub stall_always: bool,
}

/// Answers cut short: see [`Plan::cut_answers`].
#[derive(Debug, Clone)]
pub struct Cut {
    pub to_requests_with: String,
    pub after_bytes: usize,
    pub times: usize,
}

pub struct FaultProxy {
    pub port: u16,
    plan: Arc<Mutex<Plan>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// A proxy to the server on loopback port `upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = FaultProxy {
            port,
            plan: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let (plan, connections, stop) = (
            Arc::clone(&proxy.plan),
            Arc::clone(&proxy.connections),
            Arc::clone(&proxy.stop),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (plan, connections) = (Arc::clone(&plan), Arc::clone(&connections));
                std::thread::spawn(move || forward(client, upstream, &plan, &connections, false));
            }
        });
        proxy
    }

    /// Follows `plan` from the next connection on.
    pub fn set(&self, plan: Plan) {
        *self.plan.lock().unwrap() = plan;
    }

    /// How many connections it took so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Whether the request to lose an answer to has come by.
    pub fn answer_lost(&self) -> bool {
        self.plan.lock().unwrap().lose_answer_to.is_none()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Closes `stream` with a TCP reset, as a dropped connection does.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    let _ = stream.shutdown(Shutdown::Both);
}

/// Relays one connection to `upstream` under `plan`; `passive` for an FTP data connection.
fn forward(
    client: TcpStream,
    upstream: u16,
    plan: &Arc<Mutex<Plan>>,
    connections: &Arc<AtomicUsize>,
    passive: bool,
) {
    let nth = connections.fetch_add(1, Ordering::SeqCst) + 1;
    let now = plan.lock().unwrap().clone();
    if now.drop_every.is_some_and(|k| nth.is_multiple_of(k)) {
        reset(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        reset(&client);
        return;
    };
    let lose_answer = Arc::new(AtomicBool::new(false));
    // The answer's bytes to let through, once a request to cut is seen.
    let cut_after = Arc::new(AtomicUsize::new(usize::MAX));
    let requests = {
        let (from, to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (plan, lose_answer, cut_after) = (
            Arc::clone(plan),
            Arc::clone(&lose_answer),
            Arc::clone(&cut_after),
        );
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            pump(from, to, now.rate, |chunk| -> Option<Vec<u8>> {
                // The request's head so far, enough to match a request line.
                seen.extend_from_slice(chunk);
                if seen.len() > 64 * 1024 {
                    seen.drain(..seen.len() - 1024);
                }
                let holds = |text: &str| seen.windows(text.len()).any(|w| w == text.as_bytes());
                let mut plan = plan.lock().unwrap();
                // The first request to match takes the fault.
                if let Some(text) = &now.lose_answer_to
                    && holds(text)
                    && plan.lose_answer_to.as_deref() == Some(text.as_str())
                {
                    plan.lose_answer_to = None;
                    lose_answer.store(true, Ordering::SeqCst);
                }
                if let Some(text) = &now.stall_request_with
                    && holds(text)
                    && plan.stall_request_with.as_deref() == Some(text.as_str())
                {
                    if !plan.stall_always {
                        plan.stall_request_with = None;
                    }
                    drop(plan);
                    // Nothing more is read from the client: its data piles up unacknowledged
                    // once the buffers between are full.
                    std::thread::sleep(Duration::from_secs(600));
                    return None;
                }
                if let Some(cut) = &mut plan.cut_answers
                    && cut.times > 0
                    && cut_after.load(Ordering::SeqCst) == usize::MAX
                    && holds(&cut.to_requests_with)
                {
                    cut.times -= 1;
                    cut_after.store(cut.after_bytes, Ordering::SeqCst);
                }
                None
            });
        })
    };
    let mut answered = 0usize;
    let (answers_from, answers_to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    pump(answers_from, answers_to, now.rate, |chunk| {
        answered += chunk.len();
        // A passive data connection is cut once it has carried enough, while cuts are left.
        let cut_passive = passive
            && match &mut plan.lock().unwrap().cut_passive {
                Some((after, times)) if *times > 0 && answered > *after => {
                    *times -= 1;
                    true
                }
                _ => false,
            };
        if cut_passive
            || lose_answer.load(Ordering::SeqCst)
            || answered > cut_after.load(Ordering::SeqCst)
        {
            reset(&client);
            reset(&server);
        }
        passive_through_proxy(chunk, plan, connections)
    });
    let _ = requests.join();
    let _ = server.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
}

/// An FTP server's passive-mode reply (`227 … (h1,h2,h3,h4,p1,p2)` or `229 … (|||port|)`),
/// rewritten to a port of the proxy that relays the data connection under the same plan.
fn passive_through_proxy(
    chunk: &[u8],
    plan: &Arc<Mutex<Plan>>,
    connections: &Arc<AtomicUsize>,
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(chunk).ok()?;
    let (head, rest) = text.split_once('(')?;
    let (inside, tail) = rest.split_once(')')?;
    let port: u16 = if head.starts_with("227 ") {
        let numbers: Vec<u16> = inside.split(',').filter_map(|n| n.parse().ok()).collect();
        let [.., high, low] = numbers[..] else {
            return None;
        };
        high * 256 + low
    } else if head.starts_with("229 ") {
        inside.trim_matches('|').parse().ok()?
    } else {
        return None;
    };
    let relay = TcpListener::bind("127.0.0.1:0").ok()?;
    let relayed = relay.local_addr().ok()?.port();
    let (plan, connections) = (Arc::clone(plan), Arc::clone(connections));
    std::thread::spawn(move || {
        if let Ok((client, _)) = relay.accept() {
            forward(client, port, &plan, &connections, true);
        }
    });
    let inside = if head.starts_with("227 ") {
        format!("127,0,0,1,{},{}", relayed / 256, relayed % 256)
    } else {
        format!("|||{relayed}|")
    };
    Some(format!("{head}({inside}){tail}").into_bytes())
}

/// Copies `from` to `to` until either ends, at `rate` bytes a second at most; `inspect` sees
/// each chunk before it is sent on (and may reset the connection instead, or give other bytes
/// to send in its place).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    rate: Option<u64>,
    mut inspect: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buffer = vec![0u8; if rate.is_some() { 4096 } else { 64 * 1024 }];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let replaced = inspect(&buffer[..n]);
        let chunk = replaced.as_deref().unwrap_or(&buffer[..n]);
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        sent += chunk.len() as u64;
    }
    let _ = to.shutdown(Shutdown::Write);
}
