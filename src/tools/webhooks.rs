//! `callrec webhooks …`: operators' view of the webhook queue ("did the CRM hear about call X?").

use std::io::Write;

use crate::store::webhooks::HookFilter;
use crate::store::Store;
use crate::tools::recordings::when;

/// One line per event; a failing one gets its last error on the next line.
pub async fn list(store: &Store, f: &HookFilter, out: &mut impl Write) -> anyhow::Result<usize> {
    let rows = store.hook_events(f).await?;
    writeln!(
        out,
        "{:<36}  {:<9}  {:<20}  {:<16}  {:<16}  {:<36}  {:<20}  attempts",
        "event", "state", "type", "account", "webhook", "recording", "created"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<36}  {:<9}  {:<20}  {:<16}  {:<16}  {:<36}  {:<20}  {}",
            r.id,
            r.state.as_str(),
            r.event_type,
            crate::telemetry::printable(&r.account_id),
            crate::telemetry::printable(&r.webhook_id),
            r.recording_id.as_deref().unwrap_or("-"),
            when(r.created_us),
            r.attempts
        )?;
        if let Some(e) = &r.last_error {
            if r.state.as_str() != "delivered" {
                writeln!(
                    out,
                    "    last {}: {e}",
                    r.last_status.map_or("error".to_string(), |s| s.to_string())
                )?;
            }
        }
    }
    Ok(rows.len())
}
