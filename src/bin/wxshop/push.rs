//! `wxshop push …`: message-push signatures and WXBizMsgCrypt.

use clap::{Subcommand, ValueEnum};
use wxshop::crypto::{msgcrypt::MsgCrypt, sig};
use wxshop::push::body;

use crate::{Rejected, print_out, stdin_bytes};

#[derive(Clone, Copy, ValueEnum)]
pub enum EnvelopeFormat {
    Xml,
    Json,
}

#[derive(Subcommand)]
pub enum PushCommand {
    /// Checks a URL-verification signature; prints the echostr.
    VerifyUrl {
        /// The console Token.
        #[arg(long)]
        token: String,
        /// The timestamp query parameter.
        #[arg(long)]
        timestamp: String,
        /// The nonce query parameter.
        #[arg(long)]
        nonce: String,
        /// The signature query parameter.
        #[arg(long)]
        signature: String,
        /// The echostr query parameter.
        #[arg(long)]
        echostr: String,
    },
    /// Decrypts a secure-mode push body (stdin, XML or JSON holding Encrypt); prints the message.
    Decrypt {
        /// The console Token.
        #[arg(long)]
        token: String,
        /// The console EncodingAESKey (43 characters).
        #[arg(long)]
        aes_key: String,
        /// The appid the plaintext must end with.
        #[arg(long)]
        appid: String,
        /// The timestamp query parameter.
        #[arg(long)]
        timestamp: String,
        /// The nonce query parameter.
        #[arg(long)]
        nonce: String,
        /// The msg_signature query parameter.
        #[arg(long)]
        msg_signature: String,
    },
    /// Encrypts a reply (stdin); prints the signed envelope.
    Encrypt {
        /// The console Token.
        #[arg(long)]
        token: String,
        /// The console EncodingAESKey (43 characters).
        #[arg(long)]
        aes_key: String,
        /// The appid to append.
        #[arg(long)]
        appid: String,
        /// The timestamp to sign.
        #[arg(long)]
        timestamp: String,
        /// The nonce to sign.
        #[arg(long)]
        nonce: String,
        /// The envelope format.
        #[arg(long, value_enum, default_value = "xml")]
        format: EnvelopeFormat,
    },
}

pub fn run(cmd: PushCommand) -> Result<(), Rejected> {
    match cmd {
        PushCommand::VerifyUrl { token, timestamp, nonce, signature, echostr } => {
            if sig::verify_sha1_sorted(&[&token, &timestamp, &nonce], &signature) {
                print_out(echostr.as_bytes())
            } else if sig::is_uppercase_hex_sha1(&signature) {
                // WeChat signs in lowercase hex; the endpoint refuses uppercase, so the tool does too.
                Err(Rejected("signature is uppercase hex; WeChat signs in lowercase".into()))
            } else {
                Err(Rejected("signature does not match sha1(sort(token, timestamp, nonce))".into()))
            }
        }
        PushCommand::Decrypt { token, aes_key, appid, timestamp, nonce, msg_signature } => {
            let crypt = MsgCrypt::new(token, &aes_key, appid)?;
            let input = stdin_bytes()?;
            let (_, envelope) = body::parse(&input)?;
            let encrypt = envelope
                .get("Encrypt")
                .and_then(|v| v.as_str())
                .ok_or_else(|| Rejected("the body holds no Encrypt".into()))?;
            let plain = crypt.decrypt_verified(&msg_signature, &timestamp, &nonce, encrypt)?;
            print_out(&plain)
        }
        PushCommand::Encrypt { token, aes_key, appid, timestamp, nonce, format } => {
            let crypt = MsgCrypt::new(token, &aes_key, appid)?;
            let plain = stdin_bytes()?;
            let reply = crypt.encrypt_reply(&plain, &timestamp, &nonce);
            let out = match format {
                EnvelopeFormat::Xml => reply.to_xml(),
                EnvelopeFormat::Json => reply.to_json(),
            };
            print_out(out.as_bytes())
        }
    }
}
