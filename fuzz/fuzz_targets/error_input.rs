//! The input the error-answer targets (google_error, graph_error) read: one selector byte,
//! two status bytes, then the body. The second status byte's low bit picks how the status
//! is read: clear, the first byte indexes the statuses the provider answers with (so the
//! fuzzer need not guess them); set, the two bytes are any status, big-endian.

/// The selector, the status and the body of `data`; `None` when it is too short.
pub fn split<'a>(data: &'a [u8], statuses: &[u16]) -> Option<(u8, u16, &'a [u8])> {
    let [selector, status, raw_status, body @ ..] = data else {
        return None;
    };
    let status = if raw_status & 1 == 0 {
        statuses[usize::from(*status) % statuses.len()]
    } else {
        u16::from_be_bytes([*status, *raw_status])
    };
    Some((*selector, status, body))
}
