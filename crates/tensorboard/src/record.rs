//! TFRecord framing, the container of event files: each record is its length (`u64`, little-endian), the
//! masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data.

use std::io::{self, Write};

/// TensorFlow's CRC mask (`tensorflow/core/lib/hash/crc32c.h`): rotate right by 15 bits and add a
/// constant, so that a CRC of data that holds CRCs is not degenerate.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes `data` as one record.
pub fn write_record(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc32c(data).to_le_bytes())
}

/// The records of `bytes`, checking both CRCs of each; an error names the record that is damaged.
pub fn read_records(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let n = records.len();
        let (head, rest) = bytes
            .split_first_chunk::<12>()
            .ok_or(format!("record {n}: truncated header"))?;
        let len_bytes: [u8; 8] = head[..8].try_into().expect("8 bytes");
        let len_crc = u32::from_le_bytes(head[8..].try_into().expect("4 bytes"));
        if masked_crc32c(&len_bytes) != len_crc {
            return Err(format!("record {n}: the length's CRC does not match"));
        }
        let len = u64::from_le_bytes(len_bytes) as usize;
        if rest.len() < len + 4 {
            return Err(format!("record {n}: truncated data"));
        }
        let (data, tail) = rest.split_at(len);
        let crc = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes"));
        if masked_crc32c(data) != crc {
            return Err(format!("record {n}: the data's CRC does not match"));
        }
        records.push(data.to_vec());
        bytes = &tail[4..];
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::manual_rotate)]
    fn crc32c_is_castagnolis_and_the_mask_is_tensorflows() {
        // CRC-32C check value ("123456789" → 0xE3069283) and its mask by hand.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let masked = ((0xE306_9283u32 >> 15) | (0xE306_9283u32 << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), masked);
    }

    #[test]
    fn records_round_trip_and_damage_is_named() {
        let mut out = Vec::new();
        write_record(&mut out, b"first").unwrap();
        write_record(&mut out, b"").unwrap();
        write_record(&mut out, b"third record").unwrap();
        assert_eq!(
            read_records(&out).unwrap(),
            [b"first".to_vec(), vec![], b"third record".to_vec()]
        );
        let mut damaged = out.clone();
        damaged[14] ^= 1;
        assert!(read_records(&damaged).unwrap_err().contains("record 0"));
        assert!(
            read_records(&out[..out.len() - 2])
                .unwrap_err()
                .contains("record 2")
        );
    }
}
