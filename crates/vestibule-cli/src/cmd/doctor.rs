//! `vestibule doctor`: probe a server, check a configuration offline, or scan a SPA's source.
//! Exit 0 when every browser family works, 1 when one would fail, 2 on usage errors.

use std::io::{BufRead, IsTerminal};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use vestibule::config::{ConfigError, RawConfig};
use vestibule::doctor::probe::{ProbeRequest, probe};
use vestibule::doctor::rules::{Credentials, Diagnosis, diagnose};
use vestibule::doctor::scan::{ScanTarget, scan_dir};
use vestibule::doctor::{offline, report};
use vestibule::origin::Origin;

use crate::cli::{Cli, DoctorArgs};

/// A usage error: message, exit 2.
struct Usage(String);

fn usage(msg: impl Into<String>) -> Usage {
    Usage(msg.into())
}

pub(crate) async fn run(cli: &Cli, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    match run_inner(cli, args).await {
        Ok(code) => Ok(code),
        Err(Usage(msg)) => {
            eprintln!("error: {msg}");
            eprintln!(
                "usage: vestibule doctor --page URL --api URL [--method M] [--json-body JSON | --username U --password-stdin] [--header K:V]... [--json]\n       vestibule doctor --config vestibule.toml --page URL\n       vestibule doctor --scan DIR [--api URL] [--page URL]"
            );
            Ok(ExitCode::from(2))
        }
    }
}

fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn print(d: &Diagnosis, as_json: bool) -> ExitCode {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(d)).unwrap_or_default()
        );
    } else {
        print!("{}", report::human(d, color()));
    }
    if d.all_work() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn page_origin(args: &DoctorArgs) -> Result<Origin, Usage> {
    let page = args.page.as_deref().ok_or_else(|| {
        usage("--page URL is required (the SPA's page, e.g. http://localhost:3000)")
    })?;
    Origin::parse_prefix(page).map_err(|e| usage(format!("--page: {e}")))
}

async fn run_inner(cli: &Cli, args: &DoctorArgs) -> Result<ExitCode, Usage> {
    let credentials = Credentials::parse(&args.credentials).ok_or_else(|| {
        usage(format!(
            "--credentials {:?}: use include, same-origin or omit",
            args.credentials
        ))
    })?;
    if let Some(dir) = &args.scan {
        return scan(dir, args);
    }
    let Some(api) = &args.api else {
        return offline_check(cli, args, credentials).await;
    };
    let page = page_origin(args)?;
    let api = url::Url::parse(api).map_err(|e| usage(format!("--api {api:?}: {e}")))?;
    if Origin::from_url(&api).is_none() {
        return Err(usage("--api must be an http or https URL"));
    }
    let later = args
        .then
        .as_deref()
        .map(|t| url::Url::parse(t).map_err(|e| usage(format!("--then {t:?}: {e}"))))
        .transpose()?;
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| usage(format!("--header {h:?}: write Name: value")))?;
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(usage(format!("--header {h:?}: not a header name")));
        }
        headers.push((k, v.trim().to_owned()));
    }
    let body = if let Some(b) = &args.json_body {
        serde_json::from_str::<serde_json::Value>(b)
            .map_err(|e| usage(format!("--json-body is not JSON: {e}")))?;
        Some(b.clone().into_bytes())
    } else if let Some(user) = &args.username {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| usage(format!("cannot read the password from stdin: {e}")))?;
        let password = line.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(usage("--password-stdin: standard input is empty"));
        }
        Some(
            json!({"username": user, "password": password})
                .to_string()
                .into_bytes(),
        )
    } else {
        None
    };
    if body.is_some() && !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let method = args
        .method
        .clone()
        .map(|m| m.to_ascii_uppercase())
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    let mut resolve = Vec::new();
    for r in &args.resolve {
        let (host, ip) = r
            .rsplit_once(':')
            .ok_or_else(|| usage(format!("--resolve {r:?}: write host:ip")))?;
        let ip: IpAddr = ip
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| usage(format!("--resolve {r:?}: {ip:?} is not an IP address")))?;
        resolve.push((host.to_ascii_lowercase(), ip));
    }
    let extra_roots = match &args.cacert {
        Some(path) => vec![
            std::fs::read(path).map_err(|e| usage(format!("--cacert {}: {e}", path.display())))?,
        ],
        None => Vec::new(),
    };
    let req = ProbeRequest {
        page,
        api,
        later,
        method,
        headers,
        body,
        credentials,
        resolve,
        timeout: Duration::from_secs(args.timeout.max(1)),
        extra_roots,
        login: args.username.is_some(),
    };
    match probe(&req).await {
        Ok(ex) => Ok(print(&diagnose(&ex), args.json)),
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "hint: is the API running at that address? (--resolve host:ip maps a name to an address)"
            );
            Ok(ExitCode::from(1))
        }
    }
}

async fn offline_check(
    cli: &Cli,
    args: &DoctorArgs,
    credentials: Credentials,
) -> Result<ExitCode, Usage> {
    if cli.config.is_none() && !std::path::Path::new("vestibule.toml").exists() {
        return Err(usage(
            "give --api URL to probe a server, --config FILE to check a configuration, or --scan DIR",
        ));
    }
    let page = page_origin(args)?;
    let raw = RawConfig::load_profile(
        cli.config.as_deref(),
        cli.profile.as_deref(),
        serde_json::Value::Object(serde_json::Map::new()),
    );
    let public_url_set = raw.as_ref().is_ok_and(|r| r.public_url.is_some());
    let config = match raw.and_then(RawConfig::validate) {
        Ok(c) => c,
        Err(ConfigError::Invalid(problems)) => {
            println!(
                "the configuration is refused by the server ({} problem(s)):",
                problems.len()
            );
            for p in problems {
                println!("  - {p}");
            }
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(usage(e.to_string())),
    };
    let ex = offline::exchange(config.offline_server(), &page, credentials)
        .await
        .map_err(|e| usage(format!("public_url: {e}")))?;
    let mut d = diagnose(&ex);
    // The OpenID providers: discovery fetched now, the callback, the page as a return_to.
    let oidc = vestibule::doctor::oidc::check(
        &config.oidc.providers,
        &config.public_origin,
        public_url_set,
        &config.origins,
        Some(&page),
        Duration::from_secs(args.timeout.max(1)),
    )
    .await;
    let oidc_fails = oidc
        .iter()
        .any(|f| f.status == vestibule::doctor::rules::Status::Fail);
    d.findings.extend(oidc);
    let code = print(&d, args.json);
    Ok(if oidc_fails { ExitCode::from(1) } else { code })
}

fn scan(dir: &std::path::Path, args: &DoctorArgs) -> Result<ExitCode, Usage> {
    let origin = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| Origin::parse_prefix(s).map_err(|e| usage(format!("{flag}: {e}"))))
            .transpose()
    };
    let target = ScanTarget {
        api: origin("--api", &args.api)?,
        page: origin("--page", &args.page)?,
    };
    let hits =
        scan_dir(dir, &target).map_err(|e| usage(format!("--scan {}: {e}", dir.display())))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "scan": hits })).unwrap_or_default()
        );
    } else if hits.is_empty() {
        println!(
            "no fetch/axios/XHR call without credentials found under {}",
            dir.display()
        );
    } else {
        println!(
            "{} call(s) may drop the session cookie (rule 1: cross-origin calls need credentials):",
            hits.len()
        );
        for h in &hits {
            println!(
                "{}:{}: {}: {}",
                dir.join(&h.file).display(),
                h.line,
                h.kind,
                h.problem
            );
            println!("    {}", h.code);
            println!("    fix: {}", h.fix);
        }
    }
    Ok(if hits.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
