//! The one way a long-running command (the service, the sandbox) learns it should stop:
//! a stop-request file appearing (portable: `stop` writes it), Ctrl-C, or SIGTERM on Unix.

use std::path::PathBuf;
use std::time::Duration;

/// Resolves when a stop is requested; removes the request file it saw.
pub async fn requested(stop_file: Option<PathBuf>) {
    let polled = async {
        match stop_file {
            Some(file) => {
                while !file.exists() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let _ = std::fs::remove_file(&file);
            }
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = polled => {}
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
