//! hive-sign: sign an upload with a Hive private key (WIF) the way frontends do, and make a local
//! account for trying the cluster. Only for local use: a real account's key never leaves its owner.
//!
//!   hive-sign keygen --name local.user --dir .cluster     # writes local.user.wif + accounts.json
//!   hive-sign sign --key-file .cluster/local.user.wif photo.jpg   # prints the signature
//!   curl -F file=@photo.jpg http://127.0.0.1:8080/local.user/$(hive-sign sign --key-file … photo.jpg)
//!   hive-sign proxy-url http://127.0.0.1:8080/DQm…/photo.jpg --options 'width=320&format=webp'

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imagehost::auth::signature::{public_key_string, random_signing_key, sign, signing_key_from_wif, wif_of};
use imagehost::keys::UploadDigests;

#[derive(Parser)]
#[command(
    name = "hive-sign",
    version,
    about = "Sign Hive image uploads, and make a local test account"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Make a posting key and an accounts file (imagehost's `accounts.static_file`) naming it.
    Keygen {
        #[arg(long, default_value = "local.user")]
        name: String,
        /// Where `<name>.wif` and `accounts.json` are written (kept if they exist).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the signature for uploading FILE to `/:user/:sig` (or `/cs/:user/:sig` with --checksum).
    Sign {
        /// A file holding the WIF private key (`5…`).
        #[arg(long)]
        key_file: PathBuf,
        /// Sign for the checksum route (`/cs/:user/:sig`): the signature covers sha256 of the
        /// file, not the file itself.
        #[arg(long)]
        checksum: bool,
        /// The image to upload.
        file: PathBuf,
    },
    /// Print the key (`DQm…`) an upload of FILE is stored under.
    Key { file: PathBuf },
    /// Print the `/p/` resizing-proxy URL of an image URL (base58 of the URL, plus options).
    ProxyUrl {
        url: String,
        /// The imagehost or edge that serves it.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        /// Query options, e.g. `width=320&format=webp`.
        #[arg(long, default_value = "")]
        options: String,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Keygen { name, dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let wif_path = dir.join(format!("{name}.wif"));
            let key = match std::fs::read_to_string(&wif_path) {
                Ok(text) => signing_key_from_wif(text.trim())
                    .ok_or(format!("{}: not a WIF key", wif_path.display()))?,
                Err(_) => {
                    let key = random_signing_key();
                    std::fs::write(&wif_path, format!("{}\n", wif_of(&key))).map_err(|e| e.to_string())?;
                    key
                }
            };
            let public = public_key_string(key.verifying_key());
            let auth =
                serde_json::json!({"weight_threshold": 1, "account_auths": [], "key_auths": [[public, 1]]});
            let accounts = serde_json::json!([{
                "name": name, "owner": auth, "active": auth, "posting": auth,
                "reputation": "1000000000000", "json_metadata": "",
                "posting_json_metadata": serde_json::json!({"profile": {"version": 2, "name": name}}).to_string(),
            }]);
            let accounts_path = dir.join("accounts.json");
            std::fs::write(
                &accounts_path,
                serde_json::to_string_pretty(&accounts).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            println!("account {name}: posting key {public}");
            println!("private key (WIF) in {}", wif_path.display());
            println!("accounts file {}", accounts_path.display());
        }
        Cmd::Sign {
            key_file,
            checksum,
            file,
        } => {
            let text =
                std::fs::read_to_string(&key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
            let key =
                signing_key_from_wif(text.trim()).ok_or(format!("{}: not a WIF key", key_file.display()))?;
            let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            println!(
                "{}",
                sign(
                    &key,
                    &UploadDigests::of(&data)
                        .signed_digest(checksum)
                        .ok_or("no digest")?
                )
            );
        }
        Cmd::ProxyUrl { url, base, options } => {
            let q = if options.is_empty() {
                String::new()
            } else {
                format!("?{options}")
            };
            println!(
                "{}/p/{}{q}",
                base.trim_end_matches('/'),
                bs58::encode(url.as_bytes()).into_string()
            );
        }
        Cmd::Key { file } => {
            let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            println!("{}", UploadDigests::of(&data).upload_key());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hive-sign: {e}");
            ExitCode::from(2)
        }
    }
}
