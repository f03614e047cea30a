//! Access tokens: short-lived HS256 JWTs. Refresh tokens are opaque random
//! strings kept (hashed) in the database, see `db::tokens`.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::db::users::Role;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Username, for logs.
    pub name: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Always `access`: a different kind of token is never accepted here.
    pub typ: String,
    /// The user's token version when it was issued; a token whose version
    /// is behind the user's is refused (signed out everywhere). Tokens from
    /// before versions existed read as 0.
    #[serde(default)]
    pub ver: i64,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").finish_non_exhaustive()
    }
}

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    pub fn issue(
        &self,
        user_id: &str,
        username: &str,
        role: Role,
        version: i64,
    ) -> anyhow::Result<String> {
        let now = crate::db::now_ms() / 1000;
        self.sign(&Claims {
            sub: user_id.to_string(),
            name: username.to_string(),
            role,
            iat: now,
            exp: now + self.access_ttl.as_secs() as i64,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            typ: "access".into(),
            ver: version,
        })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// Checks signature, expiry and kind.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "token expired".to_string()
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "token signature is invalid".to_string()
                    }
                    _ => "token is malformed or invalid".to_string(),
                }
            })?;
        if data.claims.typ != "access" {
            return Err("not an access token".into());
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60))
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let t = k.issue("u1", "alice", Role::User, 3).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role, c.ver), ("u1", Role::User, 3));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let k = keys();
        let now = crate::db::now_ms() / 1000;
        let expired = k
            .sign(&Claims {
                sub: "u1".into(),
                name: "a".into(),
                role: Role::Admin,
                iat: now - 7200,
                exp: now - 3600,
                jti: "j".into(),
                typ: "access".into(),
                ver: 0,
            })
            .unwrap();
        assert_eq!(k.verify(&expired).unwrap_err(), "token expired");

        let good = k.issue("u1", "alice", Role::Viewer, 0).unwrap();
        // Swap the payload for one claiming admin, keep the signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = k.issue("u1", "alice", Role::Admin, 0).unwrap();
        let forged_payload = forged.split('.').nth(1).unwrap().to_string();
        parts[1] = &forged_payload;
        let other = TokenKeys::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        let foreign = other.issue("u1", "alice", Role::Admin, 0).unwrap();
        assert!(k.verify(&foreign).is_err());
        // The payload swap keeps a valid-looking token with the wrong signature.
        let tampered = parts.join(".");
        assert_ne!(tampered, forged);
        assert!(k.verify(&tampered).is_err());
        assert!(k.verify("garbage").is_err());
    }
}
