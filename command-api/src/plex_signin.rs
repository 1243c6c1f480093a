//! Plex sign-in as a service (docs/design.md §6, Plex PIN login): the PIN's lifecycle at
//! plex.tv and the rule of who may sign in — the account behind an authorised PIN must reach
//! the configured Plex Media Server (the server, with its `machineIdentifier`, is among the
//! account's plex.tv resources, owned or shared). What a sign-in records (the PIN used once,
//! the account registered or its profile updated) is
//! [`medianest_store::accounts::UserAccounts::sign_in_with_plex`]. The HTTP side
//! ([`crate::signin`]) keeps what is HTTP: the sign-in limiter, the problems, the session
//! and its cookie.

use medianest_integrations::plex::{PlexError, PlexPin, PlexTvClient, PlexUser, PmsClient};
use medianest_store::accounts::PlexAccount;
use tokio::sync::OnceCell;

/// Plex sign-in: the plex.tv client and the Plex Media Server whose access is required.
pub struct PlexSignIn {
    plex_tv: PlexTvClient,
    server: PmsClient,
    machine_identifier: OnceCell<String>,
}

impl std::fmt::Debug for PlexSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlexSignIn")
            .field("server", &self.server.base_url().as_str())
            .finish()
    }
}

/// The plex.tv account that authorised a PIN, with the token plex.tv gave for it.
pub(crate) struct AuthorisedPin {
    /// The account (`GET /api/v2/user`).
    pub(crate) user: PlexUser,
    /// The account's token for MediaNest (never stored).
    token: String,
}

impl PlexSignIn {
    /// Sign-in through `plex_tv`, for accounts with access to `server`.
    pub fn new(plex_tv: PlexTvClient, server: PmsClient) -> Self {
        Self {
            plex_tv,
            server,
            machine_identifier: OnceCell::new(),
        }
    }

    /// A new strong PIN at plex.tv, and the app.plex.tv URL where the user authorises it.
    ///
    /// # Errors
    /// plex.tv's.
    pub(crate) async fn create_pin(&self) -> Result<(PlexPin, String), PlexError> {
        let pin = self.plex_tv.create_pin().await?;
        let auth_url = self.plex_tv.auth_url(&pin.code, None);
        Ok((pin, auth_url))
    }

    /// The account that authorised PIN `pin_id`; `None` while it is not authorised yet.
    ///
    /// # Errors
    /// plex.tv's: [`PlexError::NotFound`] for an unknown or expired PIN,
    /// [`PlexError::Unauthorized`] when plex.tv refuses the PIN's token.
    pub(crate) async fn authorised_by(
        &self,
        pin_id: u64,
    ) -> Result<Option<AuthorisedPin>, PlexError> {
        let pin = self.plex_tv.pin(pin_id).await?;
        let Some(token) = pin.auth_token.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let user = self.plex_tv.user(&token).await?;
        Ok(Some(AuthorisedPin { user, token }))
    }

    /// The account as it may sign in, when it reaches the Plex Media Server (owning it or
    /// shared with it); `None` when it does not.
    ///
    /// # Errors
    /// plex.tv's or the server's.
    pub(crate) async fn account(
        &self,
        pin: AuthorisedPin,
    ) -> Result<Option<PlexAccount>, PlexError> {
        let machine_identifier = self.machine_identifier().await?;
        let resources = self.plex_tv.resources(&pin.token).await?;
        let Some(server) = resources
            .iter()
            .find(|r| r.is_server() && r.client_identifier == machine_identifier)
        else {
            return Ok(None);
        };
        Ok(Some(PlexAccount {
            plex_id: pin.user.id,
            username: pin.user.username,
            email: pin.user.email,
            avatar: pin.user.thumb,
            owner: server.owned,
        }))
    }

    /// The server's `machineIdentifier` (asked once, then remembered).
    async fn machine_identifier(&self) -> Result<&str, PlexError> {
        self.machine_identifier
            .get_or_try_init(|| async {
                self.server
                    .identity()
                    .await
                    .map(|identity| identity.machine_identifier)
            })
            .await
            .map(String::as_str)
    }
}
