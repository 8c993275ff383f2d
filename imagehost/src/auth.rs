//! Who may upload: Hive signatures (§2.1–2.3, D5) and HiveSigner-style tokens (§2.4, D6)
//! checked against account authorities.

pub mod accounts;
pub mod hs_token;
pub mod signature;
pub mod source;

pub use accounts::Account;
pub use signature::HiveSignature;
pub use source::{AccountSource, AccountsError};
