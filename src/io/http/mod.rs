//! HTTP: the admin API (outages, calls, callbacks, audit, reload), the Alertmanager webhook,
//! the Prometheus endpoint, and the WebRTC test phone, each on its own router and state;
//! this file joins the admin server's routers behind one bearer token.

pub mod admin;
pub mod agents;
mod alertmanager;
pub mod auth;
pub mod callers;
mod error;
pub mod metrics;
mod request;
pub mod webrtc;

use axum::routing::post;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Largest request body accepted.
const MAX_BODY: usize = 256 * 1024;

/// The admin server's routes: health and the phone's page open, the rest behind the token.
pub fn router(
    admin: admin::AdminState,
    phone: webrtc::PhoneState,
    queues: agents::QueuesState,
    callers: callers::CallersState,
    token: Arc<str>,
) -> Router {
    let api = admin::api_routes()
        .route("/api/alertmanager", post(alertmanager::webhook))
        .with_state(admin.clone())
        .merge(webrtc::api_routes().with_state(phone.clone()))
        .merge(agents::api_routes().with_state(queues))
        .merge(callers::api_routes().with_state(callers.clone()))
        .route_layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ));
    Router::new()
        .merge(admin::health_routes().with_state(admin))
        .merge(webrtc::page_routes().with_state(phone))
        .merge(callers::page_routes().with_state(callers))
        .merge(api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

/// Serves the admin server on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, shutdown: CancellationToken) {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        warn!(error = %e, "admin API stopped");
    }
}
