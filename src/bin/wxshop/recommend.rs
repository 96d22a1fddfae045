//! `wxshop recommend eval`: full-ranking offline evaluation of every recommendation model on files
//! nobody here made. Exit 0 with the report, 2 on a malformed or unreadable file (with its line).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use wxshop::market::recommend::eval::{self, CsvError};

#[derive(Subcommand)]
pub enum RecommendCommand {
    /// Fits every model on TRAIN and scores its top k against TEST (full ranking).
    Eval {
        /// Training interactions: CSV `user,item,ts,event` with a header.
        #[arg(long)]
        train: PathBuf,
        /// Test interactions, same format.
        #[arg(long)]
        test: PathBuf,
        /// The catalogue: CSV `item,merchant,category,price` (price in fen) with a header.
        #[arg(long)]
        items: Option<PathBuf>,
        /// The cut-off.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        k: u16,
        /// Print one JSON object (else a table).
        #[arg(long)]
        json: bool,
    },
}

fn open(path: &PathBuf) -> Result<std::io::BufReader<std::fs::File>, String> {
    std::fs::File::open(path).map(std::io::BufReader::new).map_err(|e| format!("{}: {e}", path.display()))
}

fn load<T>(
    path: &PathBuf,
    read: impl FnOnce(std::io::BufReader<std::fs::File>) -> Result<T, CsvError>,
) -> Result<T, String> {
    read(open(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn run(cmd: RecommendCommand) -> ExitCode {
    let RecommendCommand::Eval { train, test, items, k, json } = cmd;
    let loaded = (|| {
        let tr = load(&train, eval::read_interactions)?;
        let te = load(&test, eval::read_interactions)?;
        let it = match &items {
            Some(p) => load(p, eval::read_items)?,
            None => Vec::new(),
        };
        Ok::<_, String>((tr, te, it))
    })();
    let (tr, te, it) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {}", e.replace('\n', " "));
            return ExitCode::from(2);
        }
    };
    let report = eval::evaluate(&tr, &te, &it, k as usize);
    let out = if json {
        let mut v = serde_json::to_value(&report).expect("the report serializes");
        // Also under the cut-off's own number (`recall@20`), for readers that expect it.
        if let Some(obj) = v.as_object_mut() {
            for name in ["recall", "ndcg", "hit_rate"] {
                if let Some(x) = obj.get(&format!("{name}@k")).cloned() {
                    obj.insert(format!("{name}@{k}"), x);
                }
            }
        }
        v.to_string()
    } else {
        let mut s = format!(
            "{:<8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10} {:>9} {:>9}\n",
            "model", "recall@k", "ndcg@k", "hit@k", "coverage", "gini", "fit_ms", "p50_us", "p99_us"
        );
        for (name, m) in &report.models {
            s += &format!(
                "{:<8} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>7} {:>10.1} {:>9.1} {:>9.1}\n",
                name,
                m.recall,
                m.ndcg,
                m.hit_rate,
                m.catalog_coverage,
                m.merchant_gini.map(|g| format!("{g:.3}")).unwrap_or_else(|| "-".into()),
                m.fit_ms,
                m.recommend_p50_us,
                m.recommend_p99_us
            );
        }
        s + &format!("users {}, k {}, catalogue {} items", report.served.users, report.k, report.catalog_items)
    };
    println!("{out}");
    ExitCode::SUCCESS
}
