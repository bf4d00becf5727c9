//! How every target cuts libFuzzer's bytes into the decoder's arguments.

/// One fuzz case: the bytes a client sends, the read sizes they arrive in, and the limit.
pub struct Input<'a> {
    pub data: &'a [u8],
    pub cuts: &'a [u8],
    pub max_frame: usize,
}

/// Byte 0: how many cuts (0-31); bytes 1-2: `max_frame`, big-endian (0 means 1); then the
/// cuts, one byte each (the length of one read); the rest is the data.
pub fn split(bytes: &[u8]) -> Option<Input<'_>> {
    let (&n, rest) = bytes.split_first()?;
    let (max, rest) = rest.split_at_checked(2)?;
    let (cuts, data) = rest.split_at_checked(usize::from(n % 32))?;
    Some(Input {
        data,
        cuts,
        max_frame: usize::from(u16::from_be_bytes([max[0], max[1]])),
    })
}
