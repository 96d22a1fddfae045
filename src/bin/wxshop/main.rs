//! The `wxshop` command-line tool: sign, verify and decrypt from the shell, and run the emulator.
//! Contract: keys and headers as flags, the payload on stdin (read exactly), the result on stdout
//! followed by one newline, a one-line error on stderr; exit 0 success, 1 rejected input, 2 usage.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod pay;
mod push;
mod recommend;
mod wxa;

#[derive(Parser)]
#[command(name = "wxshop", version, about = "WeChat mini-program storefront toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the local WeChat + WeChat Pay emulator.
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: String,
    },
    /// Mini-program open data (encryptedData, rawData).
    #[command(subcommand)]
    Wxa(wxa::WxaCommand),
    /// WeChat Pay v3: sign, paySign, verify notifications, decrypt sensitive fields.
    #[command(subcommand)]
    Pay(pay::PayCommand),
    /// Sends a notification signed with the emulator's keys to a local webhook.
    Trigger {
        /// payment.success or refund.success.
        event: pay::TriggerEvent,
        /// The webhook URL.
        #[arg(long)]
        to: String,
        /// The order number to put in the notification.
        #[arg(long)]
        out_trade_no: Option<String>,
    },
    /// Message push: URL verification, WXBizMsgCrypt decrypt and encrypt.
    #[command(subcommand)]
    Push(push::PushCommand),
    /// Recommendation: offline evaluation of every model (`recommend eval`).
    #[command(subcommand)]
    Recommend(recommend::RecommendCommand),
}

/// An error that becomes exit status 1 with one line on stderr.
pub struct Rejected(pub String);

impl<E: std::fmt::Display> From<E> for Rejected {
    fn from(e: E) -> Self {
        Rejected(e.to_string())
    }
}

/// Reads stdin exactly.
pub fn stdin_bytes() -> Result<Vec<u8>, Rejected> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).map_err(|e| Rejected(format!("cannot read stdin: {e}")))?;
    Ok(buf)
}

/// Reads stdin as UTF-8 text, exactly.
pub fn stdin_text() -> Result<String, Rejected> {
    String::from_utf8(stdin_bytes()?).map_err(|_| Rejected("stdin is not UTF-8".into()))
}

/// Writes the result and exactly one newline.
pub fn print_out(bytes: &[u8]) -> Result<(), Rejected> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush())?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Emulator { addr } => run_emulator(&addr),
        Command::Wxa(cmd) => wxa::run(cmd),
        Command::Pay(cmd) => pay::run(cmd),
        Command::Trigger { event, to, out_trade_no } => pay::trigger(event, &to, out_trade_no),
        Command::Push(cmd) => push::run(cmd),
        // Its own exit statuses: 2 for a malformed file, as its contract says.
        Command::Recommend(cmd) => return recommend::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Rejected(msg)) => {
            let line = msg.replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::from(1)
        }
    }
}

fn run_emulator(addr: &str) -> Result<(), Rejected> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let emu = wxshop::emulator::Emulator::start(addr, wxshop::emulator::EmulatorConfig::default()).await?;
        println!("wxshop emulator listening on {}", emu.base_url());
        println!("default app: appid {} secret {}", wxshop::emulator::DEFAULT_APPID, wxshop::emulator::DEFAULT_SECRET);
        println!("control API: {}/__emulator/ (see `cargo doc` wxshop::emulator)", emu.base_url());
        println!(
            "WeChat Pay: cashier at {}/ — merchant {} (serial {}), WeChat Pay public key {} (GET /__emulator/pay/keys)",
            emu.base_url(),
            wxshop::emulator::pay::DEFAULT_MCHID,
            wxshop::emulator::pay::DEFAULT_MERCHANT_SERIAL,
            wxshop::emulator::pay::PUBLIC_KEY_ID
        );
        tokio::signal::ctrl_c().await?;
        Ok::<(), Rejected>(())
    })
}
