//! A stand-in for the Telegram Bot API that records every message.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

/// What the stand-in received: (path after /bot, JSON body).
pub type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Starts a Bot API stand-in that answers every sendMessage with `status`.
pub async fn telegram(status: StatusCode) -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/{bot}/sendMessage",
            post(
                move |State(received): State<Received>,
                      Path(bot): Path<String>,
                      Json(body): Json<Value>| async move {
                    received.lock().unwrap().push((bot, body));
                    (status, Json(serde_json::json!({"ok": status.is_success()})))
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}
