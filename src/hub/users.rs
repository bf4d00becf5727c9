//! The host's operations on a user's clients (`Admit::user`): listing, sending to and
//! disconnecting every client of one user key. Each reads the registry's user index once,
//! under its lock, then acts on those clients as `send_to` and `disconnect` do.

use super::Hub;
use crate::command::Target;
use crate::{AsMessage, ClientId, Result};

impl Hub {
    /// The clients of `user` connected now, in ascending id order (empty for a user with
    /// none, or a key no client was admitted with). Never blocks for long (copies the
    /// user's entry under the registry's lock).
    ///
    /// A client is listed from its [`Event::Connected`](crate::Event::Connected) on (it is
    /// listed before that event is emitted) until its
    /// [`Event::Disconnected`](crate::Event::Disconnected) (it is no longer listed once that
    /// is emitted). Users are per hub: in a cluster, only this hub's clients are listed.
    ///
    /// ```
    /// use std::net::TcpStream;
    /// use hubcast::{Admit, Event, Hub};
    ///
    /// let hub = Hub::builder().admit(|_| Admit::new().user("alice")).bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// let _tabs = [TcpStream::connect(hub.local_addr())?, TcpStream::connect(hub.local_addr())?];
    /// let mut ids = Vec::new();
    /// while ids.len() < 2 {
    ///     if let Ok(Event::Connected { client, .. }) = events.recv() {
    ///         ids.push(client);
    ///     }
    /// }
    /// ids.sort();
    /// assert_eq!(hub.user_clients("alice"), ids);
    /// assert!(hub.user_clients("bob").is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn user_clients(&self, user: &str) -> Vec<ClientId> {
        self.shared
            .registry()
            .users
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Sends `msg` to every client of `user` (every tab of one account, say) and returns
    /// how many clients it was sent to; 0, for a user with no client here, is not an error.
    /// Blocks as [`broadcast`](Self::broadcast) does, under
    /// [`flow_control`](crate::HubBuilder::flow_control) too.
    ///
    /// It reaches exactly the clients [`user_clients`](Self::user_clients) would list as
    /// the call begins: every client of `user` whose
    /// [`Event::Connected`](crate::Event::Connected) was emitted before the call, and none
    /// admitted after it returns. Each gets it as from [`send_to`](Self::send_to), in order
    /// with the broadcasts it receives; one that leaves meanwhile does not get it (it is
    /// counted all the same). The message is framed once per client: a user has at most
    /// [`max_clients_per_user`](crate::HubBuilder::max_clients_per_user) of them.
    ///
    /// Users are per hub: in a cluster, this reaches only this hub's clients of `user`.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast). An error after some clients were sent the message
    /// ([`Error::Closed`](crate::Error::Closed) as the hub shuts down, say) leaves it sent
    /// to those.
    ///
    /// ```
    /// use std::io::{BufRead, BufReader};
    /// use std::net::TcpStream;
    /// use hubcast::{Admit, Event, Hub};
    ///
    /// let hub = Hub::builder().admit(|_| Admit::new().user("alice")).bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// let tab = TcpStream::connect(hub.local_addr())?;
    /// assert!(matches!(events.recv(), Ok(Event::Connected { .. })));
    /// assert_eq!(hub.send_to_user("alice", "you have mail")?, 1);
    /// assert_eq!(hub.send_to_user("bob", "nobody here")?, 0);
    ///
    /// let mut line = String::new();
    /// BufReader::new(tab).read_line(&mut line)?;
    /// assert_eq!(line, "you have mail\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_to_user(&self, user: &str, msg: impl AsMessage) -> Result<usize> {
        self.shared.check()?;
        // The same errors for a user with no client as with some.
        self.frame_len(msg.parts().0)?;
        let clients = self.user_clients(user);
        for &client in &clients {
            self.submit(Target::One(client), &msg, true)?;
        }
        Ok(clients.len())
    }

    /// Disconnects every client of `user` with
    /// [`DisconnectReason::Kicked`](crate::DisconnectReason::Kicked), as
    /// [`disconnect`](Self::disconnect) does each, and returns how many; 0, for a user with
    /// no client here, is not an error. Blocks as [`broadcast`](Self::broadcast) does.
    ///
    /// It disconnects exactly the clients [`user_clients`](Self::user_clients) would list
    /// as the call begins (see [`send_to_user`](Self::send_to_user)); a client of `user`
    /// admitted after that stays. Messages sent after this call returns reach none of
    /// them. Users are per hub: in a cluster, only this hub's clients of `user` go.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](crate::Error::Closed) once the hub is shutting down;
    /// [`Error::Failed`](crate::Error::Failed) if the hub died;
    /// [`Error::WouldBlock`](crate::Error::WouldBlock) if called from one of the hub's
    /// closures when it would have had to wait.
    ///
    /// ```
    /// use std::net::TcpStream;
    /// use hubcast::{Admit, DisconnectReason, Event, Hub};
    ///
    /// let hub = Hub::builder().admit(|_| Admit::new().user("mallory")).bind("127.0.0.1:0")?;
    /// let events = hub.subscribe();
    /// let _tab = TcpStream::connect(hub.local_addr())?;
    /// assert!(matches!(events.recv(), Ok(Event::Connected { .. })));
    /// assert_eq!(hub.disconnect_user("mallory")?, 1);
    /// assert!(matches!(
    ///     events.recv(),
    ///     Ok(Event::Disconnected { reason: DisconnectReason::Kicked, .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn disconnect_user(&self, user: &str) -> Result<usize> {
        self.shared.check()?;
        let clients = self.user_clients(user);
        for &client in &clients {
            self.kick(client)?;
        }
        Ok(clients.len())
    }
}
