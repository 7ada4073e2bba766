//! The second phase: raw values checked and turned into the typed [`super::Config`]; the
//! first problem of a section names its key.

use super::*;

pub(super) fn validate(raw: RawConfig) -> Result<Config, (&'static str, String)> {
    let backend = BackendKind::of_url(&raw.database.url)
        .map_err(|error| ("database.url", error.to_string()))?;
    let max_connections = u32::try_from(raw.database.max_connections)
        .ok()
        .filter(|count| (1..=1000).contains(count))
        .ok_or_else(|| {
            (
                "database.max_connections",
                format!("must be 1 to 1000, got {}", raw.database.max_connections),
            )
        })?;
    let encryption = match raw.encryption {
        None => None,
        Some(encryption) => {
            if encryption.key_id.trim().is_empty() {
                return Err(("encryption.key_id", "must not be empty".to_owned()));
            }
            let source = match (encryption.key_file, encryption.key_env) {
                (Some(path), None) => KeySource::File(path),
                (None, Some(name)) if !name.trim().is_empty() => KeySource::Env(name),
                (None, Some(_)) => {
                    return Err(("encryption.key_env", "must not be empty".to_owned()));
                }
                (Some(_), Some(_)) => {
                    return Err((
                        "encryption.key_file",
                        "give key_file or key_env, not both".to_owned(),
                    ));
                }
                (None, None) => {
                    return Err((
                        "encryption.key_file",
                        "[encryption] needs key_file or key_env".to_owned(),
                    ));
                }
            };
            Some(EncryptionConfig {
                key_id: encryption.key_id,
                source,
            })
        }
    };
    let attempts_max_age = parse_duration(&raw.retention.attempts_max_age)
        .map_err(|detail| ("retention.attempts_max_age", detail))?;
    let worker = validate_worker(&raw.worker)?;
    let google = validate_google(raw.google)?;
    let microsoft = validate_microsoft(raw.microsoft)?;
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        return Err((
            "log.level",
            format!("{:?} is not a tracing filter: {error}", raw.log.level),
        ));
    }
    let log = match raw.log.format.as_str() {
        "human" | "json" => LogConfig {
            json: raw.log.format == "json",
            level: raw.log.level,
        },
        other => {
            return Err((
                "log.format",
                format!("must be human or json, got {other:?}"),
            ));
        }
    };
    let http = http_section(raw.http)?;
    let web = web::validate(raw.web)?;
    let smtp = smtp::validate(raw.smtp)?;
    let webhooks = validate_webhooks(&raw.webhooks)?;
    Ok(Config {
        webhooks,
        web,
        smtp,
        worker,
        google,
        microsoft,
        log,
        http,
        database: DatabaseConfig {
            url: raw.database.url,
            backend,
            max_connections,
            migrate_on_start: raw.database.migrate_on_start,
        },
        encryption,
        retention: RetentionConfig { attempts_max_age },
    })
}

pub(super) fn std_duration(
    key: &'static str,
    text: &str,
) -> Result<std::time::Duration, (&'static str, String)> {
    let duration = parse_duration(text).map_err(|detail| (key, detail))?;
    std::time::Duration::try_from(duration).map_err(|_| (key, format!("{text:?} is negative")))
}

pub(super) fn bounded<T: TryFrom<i64>>(
    key: &'static str,
    value: i64,
    min: i64,
    max: i64,
) -> Result<T, (&'static str, String)> {
    if !(min..=max).contains(&value) {
        return Err((key, format!("must be {min} to {max}, got {value}")));
    }
    T::try_from(value).map_err(|_| (key, format!("must be {min} to {max}, got {value}")))
}

pub(super) fn validate_worker(raw: &RawWorker) -> Result<WorkerSection, (&'static str, String)> {
    if !(0.0..=1.0).contains(&raw.jitter) {
        return Err((
            "worker.jitter",
            format!("must be 0 to 1, got {}", raw.jitter),
        ));
    }
    let section = WorkerSection {
        owner: raw.owner.clone().filter(|owner| !owner.trim().is_empty()),
        concurrency: bounded("worker.concurrency", raw.concurrency, 1, 10_000)?,
        claim_batch: bounded("worker.claim_batch", raw.claim_batch, 1, 10_000)?,
        email_interval: std_duration("worker.email_interval", &raw.email_interval)?,
        calendar_interval: std_duration("worker.calendar_interval", &raw.calendar_interval)?,
        jitter: raw.jitter,
        backoff_base: std_duration("worker.backoff_base", &raw.backoff_base)?,
        backoff_cap: std_duration("worker.backoff_cap", &raw.backoff_cap)?,
        recheck_interval: std_duration("worker.recheck_interval", &raw.recheck_interval)?,
        max_retry_after: std_duration("worker.max_retry_after", &raw.max_retry_after)?,
        lease: std_duration("worker.lease", &raw.lease)?,
        heartbeat: std_duration("worker.heartbeat", &raw.heartbeat)?,
        grace: std_duration("worker.grace", &raw.grace)?,
        idle_wait: std_duration("worker.idle_wait", &raw.idle_wait)?,
        once_pause_wait: std_duration("worker.once_pause_wait", &raw.once_pause_wait)?,
        invalid_grant_recheck: std_duration(
            "worker.invalid_grant_recheck",
            &raw.invalid_grant_recheck,
        )?,
        stall_pass_interval: std_duration("worker.stall_pass_interval", &raw.stall_pass_interval)?,
        tenant_rate_per_second: bounded(
            "worker.tenant_rate_per_second",
            raw.tenant_rate_per_second,
            1,
            1_000_000,
        )?,
        tenant_burst: bounded("worker.tenant_burst", raw.tenant_burst, 1, 1_000_000)?,
        red_after_consecutive_failures: bounded(
            "worker.red_after_consecutive_failures",
            raw.red_after_consecutive_failures,
            1,
            1000,
        )?,
        stall_after: std_duration("worker.stall_after", &raw.stall_after)?,
    };
    if section.heartbeat >= section.lease {
        return Err((
            "worker.heartbeat",
            "must be shorter than worker.lease".to_owned(),
        ));
    }
    if section.max_retry_after >= section.stall_after {
        return Err((
            "worker.max_retry_after",
            "must be shorter than worker.stall_after (a provider's pause would show import_stalled)"
                .to_owned(),
        ));
    }
    if section.backoff_cap < section.backoff_base {
        return Err((
            "worker.backoff_cap",
            "must not be shorter than worker.backoff_base".to_owned(),
        ));
    }
    Ok(section)
}

pub(super) fn oauth_ref(
    prefix: &'static str,
    client_id: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
) -> Result<Option<OAuthClientRef>, (&'static str, String)> {
    let Some(client_id) = client_id.filter(|id| !id.trim().is_empty()) else {
        return Ok(None);
    };
    let secret = match (secret_env, secret_file) {
        (Some(name), None) if !name.trim().is_empty() => KeySource::Env(name),
        (None, Some(path)) => KeySource::File(path),
        _ => {
            return Err((
                prefix,
                "oauth_client_id needs exactly one of oauth_client_secret_env or oauth_client_secret_file".to_owned(),
            ));
        }
    };
    Ok(Some(OAuthClientRef { client_id, secret }))
}

pub(super) fn validate_google(raw: RawGoogle) -> Result<GoogleSection, (&'static str, String)> {
    Ok(GoogleSection {
        oauth: oauth_ref(
            "google.oauth_client_id",
            raw.oauth_client_id,
            raw.oauth_client_secret_env,
            raw.oauth_client_secret_file,
        )?,
        mail_window: std_duration("google.mail_window", &raw.mail_window)?,
        calendar_past: std_duration("google.calendar_past", &raw.calendar_past)?,
        calendar_future: std_duration("google.calendar_future", &raw.calendar_future)?,
        page_size: bounded("google.page_size", raw.page_size, 1, 500)?,
        max_pages: bounded("google.max_pages", raw.max_pages, 1, 10_000)?,
        token_url: raw.token_url,
        authorize_url: raw.authorize_url,
        gmail_base: raw.gmail_base,
        calendar_base: raw.calendar_base,
        directory_base: raw.directory_base,
    })
}

pub(super) fn validate_microsoft(
    raw: RawMicrosoft,
) -> Result<MicrosoftSection, (&'static str, String)> {
    Ok(MicrosoftSection {
        oauth: oauth_ref(
            "microsoft.oauth_client_id",
            raw.oauth_client_id,
            raw.oauth_client_secret_env,
            raw.oauth_client_secret_file,
        )?,
        calendar_past: std_duration("microsoft.calendar_past", &raw.calendar_past)?,
        calendar_future: std_duration("microsoft.calendar_future", &raw.calendar_future)?,
        max_pages_per_attempt: bounded(
            "microsoft.max_pages_per_attempt",
            raw.max_pages_per_attempt,
            1,
            10_000,
        )?,
        max_page_size: bounded("microsoft.max_page_size", raw.max_page_size, 1, 1000)?,
        login_base: raw.login_base,
        graph_base: raw.graph_base,
        oauth_tenant: raw.oauth_tenant,
    })
}

/// `90s`, `45m`, `12h`, `30d`: a positive whole number and one unit.
pub fn parse_duration(text: &str) -> Result<time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let count: i64 = number
        .parse()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| {
            format!("{text:?} is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"")
        })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\""
            ));
        }
    };
    count
        .checked_mul(seconds)
        .map(time::Duration::seconds)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The classifier thresholds of `[worker]` (the store recomputes statuses with them).
pub fn thresholds(config: &Config) -> datacap_core::Thresholds {
    datacap_core::Thresholds {
        red_after_consecutive_failures: config.worker.red_after_consecutive_failures,
        stall_after: time::Duration::try_from(config.worker.stall_after)
            .unwrap_or(time::Duration::hours(1)),
    }
}

/// Checks `[http]`.
pub(super) fn http_section(raw: RawHttp) -> Result<HttpConfig, (&'static str, String)> {
    let address = |key: &'static str, text: &str| {
        text.parse::<std::net::SocketAddr>().map_err(|_| {
            (
                key,
                format!("{text:?} is not an address like 127.0.0.1:9464"),
            )
        })
    };
    let listen = address("http.listen", &raw.listen)?;
    let metrics_listen = raw
        .metrics_listen
        .as_deref()
        .map(|text| address("http.metrics_listen", text))
        .transpose()?;
    if metrics_listen == Some(listen) {
        return Err((
            "http.metrics_listen",
            "must differ from http.listen".to_owned(),
        ));
    }
    let seconds = |key: &'static str, text: &str| {
        let duration = parse_duration(text).map_err(|detail| (key, detail))?;
        u64::try_from(duration.whole_seconds())
            .ok()
            .filter(|s| (1..=3600).contains(s))
            .map(std::time::Duration::from_secs)
            .ok_or((key, "must be 1s to 1h".to_owned()))
    };
    let count = |key: &'static str, value: i64, max: i64| {
        usize::try_from(value)
            .ok()
            .filter(|v| *v >= 1 && i64::try_from(*v).is_ok_and(|v| v <= max))
            .ok_or((key, format!("must be 1 to {max}")))
    };
    Ok(HttpConfig {
        listen,
        metrics_listen,
        limits: datacap_web::Limits {
            header_read_timeout: seconds("http.header_read_timeout", &raw.header_read_timeout)?,
            request_timeout: seconds("http.request_timeout", &raw.request_timeout)?,
            max_connections: count("http.max_connections", raw.max_connections, 100_000)?,
            max_in_flight: count("http.max_in_flight", raw.max_in_flight, 10_000)?,
            body_limit: count("http.max_body_bytes", raw.max_body_bytes, 16 * 1024 * 1024)?,
            throttle_per_minute: u32::try_from(count(
                "http.sign_in_attempts_per_minute",
                raw.sign_in_attempts_per_minute,
                100_000,
            )?)
            .unwrap_or(u32::MAX),
        },
    })
}

/// Checks `[webhooks]`; the delivery task checks how the values fit together.
pub(super) fn validate_webhooks(
    raw: &RawWebhooks,
) -> Result<WebhooksSection, (&'static str, String)> {
    Ok(WebhooksSection {
        poll_interval: std_duration("webhooks.poll_interval", &raw.poll_interval)?,
        lease: std_duration("webhooks.lease", &raw.lease)?,
        batch: bounded("webhooks.batch", raw.batch, 1, 1_000)?,
        connect_timeout: std_duration("webhooks.connect_timeout", &raw.connect_timeout)?,
        request_timeout: std_duration("webhooks.request_timeout", &raw.request_timeout)?,
        backoff_base: std_duration("webhooks.backoff_base", &raw.backoff_base)?,
        backoff_cap: std_duration("webhooks.backoff_cap", &raw.backoff_cap)?,
        give_up_after: std_duration("webhooks.give_up_after", &raw.give_up_after)?,
    })
}
