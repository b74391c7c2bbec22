//! Values generated once per database: the token fingerprint key when none is configured,
//! so fingerprints stay stable across restarts and agree between instances of one store.

use sqlx::Row;

use super::{Store, StoreError};

const TOKEN_KEY: &str = "token_key";

impl Store {
    /// The database's token key, generated (32 random bytes, as 64 hex digits) by the first
    /// caller; a concurrent first caller's key wins for both.
    pub async fn token_key(&self) -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| StoreError::BadRow(format!("no randomness for a token key: {e}")))?;
        let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(TOKEN_KEY)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(TOKEN_KEY)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }
}
