//! Who may upload: Hive signatures (§2.1–2.3, D5) checked against account authorities.

pub mod accounts;
pub mod signature;
pub mod source;

pub use accounts::Account;
pub use signature::HiveSignature;
pub use source::{AccountSource, AccountsError};
