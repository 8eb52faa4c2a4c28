//! The decision line, written without the general formatting machinery.
//!
//! Every review logs one `tokenreview` event (`http::webhook`). Through tracing-subscriber's
//! own formatters it cost more than the review itself (BENCHMARKS.md: timestamp, level and
//! every field through `fmt` with padding and style checks, and in JSON the span's fields
//! parsed back from JSON for each line). [`DecisionLines`] wraps the configured formatter and
//! writes that one event itself: a per-thread timestamp prefix rebuilt once a second, fixed
//! text for level and target, each field value copied from the event once, the span part
//! copied (text) or rendered once per span and kept in the span (JSON). The bytes are the same
//! as the wrapped formatter's; the tests compare the two on the same events. Any other event,
//! or this one in a shape the fast path does not know (colours, an odd value), goes to the
//! wrapped formatter unchanged.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::LogFormat;

/// The decision event's target and fields, in the order the event records them.
const TARGET: &str = "keygate::http::webhook";
const FIELDS: [&str; 7] = [
    "message",
    "key_id",
    "username",
    "result",
    "reason",
    "peer",
    "duration_us",
];
/// Fields recorded as text (all but the last, `duration_us`, a number).
const TEXT_FIELDS: usize = FIELDS.len() - 1;
/// What the text format writes before each text field's value after the message: one copy
/// per field instead of three (space, name, `=`).
const TEXT_KEYS: [&str; TEXT_FIELDS - 1] =
    [" key_id=", " username=", " result=", " reason=", " peer="];
/// The same for the JSON format, where every text field is a string.
const JSON_KEYS: [&str; TEXT_FIELDS] = [
    ",\"message\":",
    ",\"key_id\":",
    ",\"username\":",
    ",\"result\":",
    ",\"reason\":",
    ",\"peer\":",
];
/// Room for a whole decision line (about 200 bytes), reserved once per line.
const LINE_ROOM: usize = 256;

/// A formatter that writes the decision event itself and hands every other event to `inner`.
pub struct DecisionLines<F> {
    inner: F,
    format: LogFormat,
}

impl<F> DecisionLines<F> {
    /// `inner` must be the formatter `format` names, configured as [`super::init`] does
    /// (text without colours; JSON flattened, with the current span and the span list).
    pub fn new(inner: F, format: LogFormat) -> Self {
        DecisionLines { inner, format }
    }
}

/// Whether an event is the decision event this module writes itself.
pub(crate) fn is_decision(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::INFO
        && meta.target() == TARGET
        && meta.fields().len() == FIELDS.len()
        && meta.fields().iter().zip(FIELDS).all(|(f, n)| f.name() == n)
}

/// Writes the event's values straight into the line being built, each in the format's
/// shape (an intermediate copy of the values, and finding them in it again, was a fifth of
/// the line's instructions).
struct Values<'a> {
    out: &'a mut String,
    format: LogFormat,
    seen: usize,
    duration: bool,
    ok: bool,
}

impl Values<'_> {
    /// Appends the event's values; false when they are not all of the expected kinds, in the
    /// expected order, or one needs what only the wrapped formatter does.
    fn write(event: &Event<'_>, out: &mut String, format: LogFormat) -> bool {
        let mut v = Values {
            out,
            format,
            seen: 0,
            duration: false,
            ok: true,
        };
        event.record(&mut v);
        v.ok && v.seen == TEXT_FIELDS && v.duration
    }
}

impl Visit for Values<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.ok || field.index() != self.seen || self.seen >= TEXT_FIELDS {
            self.ok = false;
            return;
        }
        let i = self.seen;
        self.seen += 1;
        // What both formatters write for a `%value` field is its `Display`, via the wrapper's
        // `Debug`.
        match self.format {
            LogFormat::Text => {
                if i > 0 {
                    self.out.push_str(TEXT_KEYS[i - 1]);
                }
                let start = self.out.len();
                // The message is the one value the text formatter escapes (control
                // characters); a message with any is left to it.
                if write!(self.out, "{value:?}").is_err()
                    || (i == 0 && has_control(&self.out[start..]))
                {
                    self.ok = false;
                }
            }
            LogFormat::Json => {
                self.out.push_str(JSON_KEYS[i]);
                self.out.push('"');
                let start = self.out.len();
                if write!(self.out, "{value:?}").is_err() {
                    self.ok = false;
                } else if json_plain(&self.out[start..]) {
                    self.out.push('"');
                } else {
                    // Rare: a value to escape is taken out again and written escaped.
                    let raw = self.out.split_off(start);
                    self.out.pop();
                    push_json_str(self.out, &raw);
                }
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.ok && field.index() == TEXT_FIELDS && self.seen == TEXT_FIELDS && !self.duration {
            self.duration = true;
            self.out.push_str(match self.format {
                LogFormat::Text => " duration_us=",
                LogFormat::Json => ",\"duration_us\":",
            });
            self.out.push_str(itoa::Buffer::new().format(value));
        } else {
            self.ok = false;
        }
    }

    // Any other kind of value is rendered differently by each formatter: not this event.
    fn record_i64(&mut self, _: &Field, _: i64) {
        self.ok = false;
    }
    fn record_bool(&mut self, _: &Field, _: bool) {
        self.ok = false;
    }
    fn record_f64(&mut self, _: &Field, _: f64) {
        self.ok = false;
    }
    fn record_str(&mut self, _: &Field, _: &str) {
        self.ok = false;
    }
    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        self.ok = false;
    }
}

thread_local! {
    /// The line being written, reused.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
    /// Unix second and `YYYY-MM-DDTHH:MM:SS.` for it.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// Writes the timestamp as tracing-subscriber's `SystemTime` timer does
/// (`2026-11-22T23:12:56.123456Z`); false for a clock before 1970 or past 9999.
fn write_timestamp(out: &mut String) -> bool {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|now| write_time(out, now))
}

/// [`write_timestamp`] for the time `now` after the Unix epoch.
fn write_time(out: &mut String, now: std::time::Duration) -> bool {
    let secs = now.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != secs {
            let Some(p) = second_prefix(secs) else {
                return false;
            };
            *prefix = p;
            *cached = secs;
        }
        // Always ASCII digits and punctuation.
        out.push_str(std::str::from_utf8(prefix).unwrap_or_default());
        let mut micros = now.subsec_micros();
        let mut digits = *b"000000Z";
        for d in digits[..6].iter_mut().rev() {
            *d = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
        true
    })
}

fn second_prefix(secs: u64) -> Option<[u8; 20]> {
    let ts = jiff::Timestamp::from_second(i64::try_from(secs).ok()?).ok()?;
    let dt = ts.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let mut s = String::with_capacity(20);
    push_padded(&mut s, u64::try_from(dt.year()).ok()?, 4);
    for (sep, v) in [
        ('-', dt.month()),
        ('-', dt.day()),
        ('T', dt.hour()),
        (':', dt.minute()),
        (':', dt.second()),
    ] {
        s.push(sep);
        push_padded(&mut s, u64::try_from(v).ok()?, 2);
    }
    s.push('.');
    s.into_bytes().try_into().ok()
}

/// `v` in decimal, zero-padded to at least `width` digits.
fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - width);
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// Whether `s` holds a control character (`char::is_control`), looking at characters only
/// when it is not all printable ASCII (the decision message always is).
fn has_control(s: &str) -> bool {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return false;
    }
    s.chars().any(char::is_control)
}

/// Whether `s` is written in a JSON string as it is (serde_json escapes nothing else).
fn json_plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// `s` as a JSON string, escaped exactly as serde_json does.
fn push_json_str(out: &mut String, s: &str) {
    if json_plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Only for a value the fast check cannot vouch for.
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// A span's JSON object as tracing-subscriber writes it (its fields parsed back from their
/// JSON and written again, then `name`), kept in the span with the fields it was made from.
struct JsonSpan {
    fields: String,
    rendered: String,
}

fn render_json_span(name: &str, fields: &str) -> Option<String> {
    let serde_json::Value::Object(map) = serde_json::from_str(fields).ok()? else {
        return None;
    };
    let mut out = String::from("{");
    for (k, v) in map {
        push_json_str(&mut out, &k);
        out.push(':');
        out.push_str(&v.to_string());
        out.push(',');
    }
    out.push_str("\"name\":");
    push_json_str(&mut out, name);
    out.push('}');
    Some(out)
}

/// Appends the span's JSON object; false if its fields are not a JSON object (the wrapped
/// formatter then writes the event, with its own handling of that case).
fn push_json_span<S, N>(out: &mut String, span: &SpanRef<'_, S>) -> bool
where
    S: for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    {
        let ext = span.extensions();
        let Some(fields) = ext.get::<FormattedFields<N>>() else {
            return false;
        };
        if let Some(c) = ext.get::<JsonSpan>()
            && c.fields == fields.fields
        {
            out.push_str(&c.rendered);
            return true;
        }
    }
    let mut ext = span.extensions_mut();
    let Some(fields) = ext
        .get_mut::<FormattedFields<N>>()
        .map(|f| f.fields.clone())
    else {
        return false;
    };
    let Some(rendered) = render_json_span(span.metadata().name(), &fields) else {
        return false;
    };
    out.push_str(&rendered);
    ext.replace(JsonSpan { fields, rendered });
    true
}

impl<S, N, F> FormatEvent<S, N> for DecisionLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if is_decision(event.metadata()) && !writer.has_ansi_escapes() {
            let done = SCRATCH.with_borrow_mut(|line| {
                line.clear();
                self.render(ctx, event, line) && writer.write_str(line).is_ok()
            });
            if done {
                return Ok(());
            }
        }
        self.inner.format_event(ctx, writer, event)
    }
}

impl<F> DecisionLines<F> {
    /// The whole line into `line`; false when the fast path cannot vouch for the bytes.
    fn render<S, N>(&self, ctx: &FmtContext<'_, S, N>, event: &Event<'_>, line: &mut String) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        match self.format {
            LogFormat::Text => {
                line.reserve(LINE_ROOM);
                if !write_timestamp(line) {
                    return false;
                }
                line.push_str("  INFO ");
                if let Some(scope) = ctx.event_scope() {
                    for span in scope.from_root() {
                        line.push_str(span.metadata().name());
                        let ext = span.extensions();
                        if let Some(fields) = ext.get::<FormattedFields<N>>()
                            && !fields.is_empty()
                        {
                            line.push('{');
                            line.push_str(fields);
                            line.push('}');
                        }
                        line.push(':');
                    }
                    line.push(' ');
                }
                line.push_str(TARGET);
                line.push_str(": ");
                if !Values::write(event, line, self.format) {
                    return false;
                }
            }
            LogFormat::Json => {
                line.reserve(LINE_ROOM);
                line.push_str("{\"timestamp\":\"");
                if !write_timestamp(line) {
                    return false;
                }
                line.push_str("\",\"level\":\"INFO\"");
                if !Values::write(event, line, self.format) {
                    return false;
                }
                line.push_str(",\"target\":\"");
                line.push_str(TARGET);
                line.push('"');
                let current = event
                    .parent()
                    .and_then(|id| ctx.span(id))
                    .or_else(|| ctx.lookup_current());
                if let Some(current) = current {
                    line.push_str(",\"span\":");
                    if !push_json_span::<S, N>(line, &current) {
                        return false;
                    }
                    line.push_str(",\"spans\":[");
                    if let Some(leaf) = ctx.lookup_current() {
                        for (i, span) in leaf.scope().from_root().enumerate() {
                            if i > 0 {
                                line.push(',');
                            }
                            if !push_json_span::<S, N>(line, &span) {
                                return false;
                            }
                        }
                    }
                    line.push(']');
                }
                line.push('}');
            }
        }
        line.push('\n');
        true
    }
}

#[cfg(test)]
mod tests;
