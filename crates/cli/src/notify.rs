//! systemd's readiness protocol (`sd_notify`) on `$NOTIFY_SOCKET`, with the standard
//! library's `UnixDatagram`: `READY=1` once the database answered and the listener is
//! bound, `RELOADING=1` then `READY=1` around a SIGHUP reload, `STOPPING=1` at shutdown,
//! and `WATCHDOG=1` at half of `$WATCHDOG_USEC` when the unit sets `WatchdogSec`.
//!
//! Without `NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every call is a no-op. A
//! path socket (`/run/systemd/notify`) and an abstract one (`@name`) are both accepted. A
//! message that cannot be sent is logged once per state and never stops the daemon.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

/// Sends states to systemd; cheap to clone.
#[derive(Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
}

struct Target {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, or a no-op when it is unset or empty. An
    /// address that cannot be used is logged and gives the no-op.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(name) if !name.is_empty() => match Self::connect(&name.to_string_lossy()) {
                Ok(target) => Notifier {
                    target: Some(Arc::new(target)),
                },
                Err(error) => {
                    warn!(%error, "NOTIFY_SOCKET is set but unusable; systemd will not hear readiness");
                    Notifier::default()
                }
            },
            _ => Notifier::default(),
        }
    }

    fn connect(name: &str) -> std::io::Result<Target> {
        let address = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None => SocketAddr::from_pathname(name)?,
        };
        Ok(Target {
            socket: UnixDatagram::unbound()?,
            address,
        })
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, …); a no-op without a socket.
    pub fn send(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(error) = target
            .socket
            .send_to_addr(state.as_bytes(), &target.address)
        {
            warn!(%error, state, "cannot notify systemd");
        }
    }

    /// Startup is done: the database answered and the listener is bound.
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving and polling");
    }

    /// A SIGHUP reload starts; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=reloading the config file");
    }

    /// Shutdown has begun (draining attempts in flight).
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining");
    }

    /// Pings the watchdog at half of `WATCHDOG_USEC` until `stop` fires, when the unit
    /// sets `WatchdogSec` (and `WATCHDOG_PID`, if given, is this process).
    pub fn spawn_watchdog(&self, stop: tokio_util::sync::CancellationToken) {
        if self.target.is_none() {
            return;
        }
        let Some(period) = watchdog_period(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        ) else {
            return;
        };
        let notifier = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => notifier.send("WATCHDOG=1"),
                }
            }
        });
    }
}

/// Half the watchdog timeout systemd gave, if it is for this process.
fn watchdog_period(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|usec| *usec > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_pings_at_half_its_timeout_for_this_process_only() {
        assert_eq!(
            watchdog_period(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_period(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_period(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(None, None, 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("soon"), None, 7), None);
    }

    #[test]
    fn states_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some(Arc::new(Notifier::connect(path.to_str().unwrap()).unwrap())),
        };
        notifier.ready();
        let mut buffer = [0_u8; 256];
        let size = listener.recv(&mut buffer).unwrap();
        assert!(buffer[..size].starts_with(b"READY=1\n"));

        use std::os::linux::net::SocketAddrExt;
        let name = format!("datacap-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let notifier = Notifier {
            target: Some(Arc::new(Notifier::connect(&format!("@{name}")).unwrap())),
        };
        notifier.stopping();
        let size = listener.recv(&mut buffer).unwrap();
        assert!(buffer[..size].starts_with(b"STOPPING=1\n"));
        // Without a socket nothing is sent and nothing fails.
        Notifier::default().ready();
    }
}
