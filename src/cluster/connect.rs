//! How a node connects to NATS (feature `nats`): the connection options the cluster asks
//! for (credentials, TLS, reconnecting forever with backoff and jitter), the probe's second
//! connection, and whether a connection is up.

use std::sync::Mutex;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event as NatsEvent};
use tokio::sync::mpsc;

use super::{Auth, Cluster};

/// Whether `client` is connected now.
pub(super) fn connected(client: &Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

/// The connection options the cluster asks for.
pub(super) async fn options(
    cluster: &Cluster,
    events: mpsc::UnboundedSender<NatsEvent>,
) -> std::io::Result<ConnectOptions> {
    let mut options = match &cluster.auth {
        Auth::None => ConnectOptions::new(),
        Auth::UserPassword(user, password) => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Auth::Token(token) => ConnectOptions::with_token(token.clone()),
        Auth::CredentialsFile(path) => ConnectOptions::with_credentials_file(path).await?,
        Auth::Nkey(seed) => ConnectOptions::with_nkey(seed.clone()),
    };
    for root in &cluster.root_certificates {
        options = options.add_root_certificates(root.clone());
    }
    if let Some((cert, key)) = &cluster.client_certificate {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let events = Mutex::new(events);
    Ok(options
        .require_tls(cluster.require_tls)
        .name(format!("hubcast {}", cluster.prefix))
        // The node delivers its own messages at once; the broker need not send them back.
        .no_echo()
        // Serve local clients while the broker is away, and keep trying.
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(backoff)
        .event_callback(move |event| {
            let _ = crate::shared::lock(&events).send(event);
            async {}
        }))
}

/// The probe's receiving connection (with echo), if it can be made.
pub(super) async fn probe_client(cluster: &Cluster) -> Option<Client> {
    let (tx, _rx) = mpsc::unbounded_channel();
    let options = options(cluster, tx).await.ok()?;
    // The same settings, but it must receive what the main connection publishes; echo is
    // per connection, so a second one sees the first one's probe.
    let options = options.name(format!("hubcast {} probe", cluster.prefix));
    options.connect(cluster.urls.as_slice()).await.ok()
}

/// The delay before reconnect attempt `n`: doubling from 100 ms to 5 s, with up to half of
/// it again as jitter, so that nodes restarted together do not all hit the broker at once.
fn backoff(attempt: usize) -> Duration {
    // async-nats counts its attempts from 1.
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(Duration::from_secs(5));
    let jitter = crate::random::random_u64() % (base.as_millis() as u64 / 2 + 1);
    base + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds_with_jitter() {
        let first = backoff(1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(150));
        for attempt in 8..20 {
            let d = backoff(attempt);
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_millis(7500),
                "{d:?}"
            );
        }
    }
}
