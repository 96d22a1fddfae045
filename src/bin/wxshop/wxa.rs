//! `wxshop wxa …`: mini-program open data.

use clap::Subcommand;

use crate::{Rejected, print_out, stdin_bytes, stdin_text};

#[derive(Subcommand)]
pub enum WxaCommand {
    /// Decrypts encryptedData (stdin) and checks watermark.appid.
    Decrypt {
        /// The user's session_key (base64).
        #[arg(long)]
        session_key: String,
        /// The iv (base64).
        #[arg(long)]
        iv: String,
        /// The appid the watermark must name.
        #[arg(long)]
        appid: String,
    },
    /// Checks sha1(rawData + session_key) against --signature; rawData on stdin.
    VerifyRaw {
        /// The session key.
        #[arg(long)]
        session_key: String,
        /// The hex signature.
        #[arg(long)]
        signature: String,
    },
}

pub fn run(cmd: WxaCommand) -> Result<(), Rejected> {
    match cmd {
        WxaCommand::Decrypt { session_key, iv, appid } => {
            let data = stdin_text()?;
            let plain = wxshop::crypto::wxa::decrypt_bytes(&appid, &session_key, &iv, &data)?;
            print_out(&plain)
        }
        WxaCommand::VerifyRaw { session_key, signature } => {
            let raw = stdin_bytes()?;
            if wxshop::crypto::sig::verify_raw_data(&raw, &session_key, &signature) {
                print_out(b"ok")
            } else {
                Err(Rejected("signature does not match sha1(rawData + session_key)".into()))
            }
        }
    }
}
