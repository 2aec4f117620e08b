//! How log lines are written on stderr: JSON lines for a log collector, or one short line per
//! event for a person at a terminal. Pingora's own records (through the `log` bridge) show only
//! when they warn, unless `RUST_LOG` says otherwise.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON lines otherwise.
    Auto,
    /// One JSON object a line.
    Json,
    /// One readable line an event.
    Text,
}

/// certgate at info; Pingora's crates (`pingora`, `pingora_core`, … all start so) at warn.
const DEFAULT_FILTER: &str = "info,pingora=warn";

/// Installs the subscriber for the whole process; `RUST_LOG` replaces the default filter.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        // The current span carries the portal's `request_id` into every line it writes.
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(terminal)
            .event_format(TextLine)
            .try_init()
    };
}

/// `2025-05-01T09:30:00.123456Z  INFO portal: signed in org=noord … request_id=3f…`: time,
/// level, where from (the crate, short), message, fields, then the fields of the spans it is in.
struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        SystemTime.format_time(&mut writer)?;
        // Records bridged from the `log` crate (Pingora's) all have the target `log`; theirs is
        // in a field.
        let mut bridged = BridgedTarget(None);
        if meta.target() == "log" {
            event.record(&mut bridged);
        }
        let target = bridged.0.as_deref().unwrap_or(meta.target());
        write!(writer, " {:>5} {}: ", meta.level(), short_target(target))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, " {fields}")?;
                    }
                }
            }
        }
        writeln!(writer)
    }
}

/// The crate an event comes from, without certgate's prefix: `certgate_portal::flow` →
/// `portal`, `pingora_core::server` → `pingora_core`, `access` → `access`.
fn short_target(target: &str) -> &str {
    let krate = target.split("::").next().unwrap_or(target);
    krate.strip_prefix("certgate_").unwrap_or(krate)
}

/// The `log.target` field of a record bridged from the `log` crate.
struct BridgedTarget(Option<String>);

impl Visit for BridgedTarget {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_shortened_to_their_crate() {
        assert_eq!(short_target("certgate_portal::flow"), "portal");
        assert_eq!(short_target("certgate_gateway"), "gateway");
        assert_eq!(short_target("certgate"), "certgate");
        assert_eq!(short_target("pingora_core::server::daemon"), "pingora_core");
        assert_eq!(short_target("access"), "access");
    }
}
