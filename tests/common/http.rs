//! A stand-in for any HTTP service a channel posts to (a Discord webhook, a JSON webhook, a
//! healthcheck server): it records every request and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Vec<u8>,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An answer: status, headers, body.
pub type Answer = (StatusCode, Vec<(&'static str, String)>, String);

pub struct Recorder {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    /// Answers the requests with `script` in order, then `200 OK` with an empty body.
    pub async fn start(script: Vec<Answer>) -> Recorder {
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let app = axum::Router::new().fallback({
            let requests = Arc::clone(&requests);
            move |method: Method, uri: Uri, _: HeaderMap, body: Bytes| async move {
                requests.lock().unwrap().push(Request {
                    method,
                    path: uri.path().to_owned(),
                    body: body.to_vec(),
                });
                let (status, headers, body) = script.lock().unwrap().pop_front().unwrap_or((
                    StatusCode::OK,
                    Vec::new(),
                    String::new(),
                ));
                let mut map = HeaderMap::new();
                for (name, value) in headers {
                    map.insert(name, value.parse().unwrap());
                }
                (status, map, body).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Recorder { url, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// "METHOD /path" of each request, in order.
    pub fn calls(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

/// A server that accepts connections and never answers: a hung endpoint.
pub async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}
