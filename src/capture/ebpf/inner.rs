//! Where to probe libssl cheaply: the function that `SSL_read` and `SSL_read_ex` both call
//! (and the one `SSL_write` and `SSL_write_ex` both call), when their machine code shows it.
//!
//! Why: a uprobe costs a trap, and on x86 the kernel then either emulates the probed
//! instruction (a `call`, `jmp`, conditional jump, `nop` or `push`) or single-steps a copy of
//! it out of line, a second trap. OpenSSL's public read and write functions begin with `sub
//! $N,%rsp` (single-stepped); on a VM that intercepts the debug trap, measured here, an entry
//! uprobe on `SSL_read` cost 17-19 us a call and one on the function it calls (which begins with
//! `push`) 1-1.5 us with its return probe (BENCHMARKS.md, "Where the probes sit"). OpenSSL 1.1.1
//! and 3.x implement `SSL_read(s, buf, num)` and `SSL_read_ex(s, buf, num, &readbytes)` as
//! wrappers of one `ssl_read_internal(s, buf, num, &readbytes)` (returning > 0 with
//! `readbytes` set, 0 for a close_notify, < 0 otherwise), and the writes of
//! `ssl_write_internal(s, buf, num, &written)`; those are not exported, so they are found here
//! as the target of each wrapper's first `call`.
//!
//! Contract: [`find`] returns the file offsets of the two inner functions only when it is sure:
//! x86-64 code, both read wrappers' first calls go to one function and both write wrappers' to
//! another, and each of those begins with a `push` (an instruction the kernel emulates). Any
//! doubt (another architecture, BoringSSL, LibreSSL, a stripped or odd build) returns `None`,
//! and the caller probes the exported functions as before. It only reads the file.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Mnemonic};
use object::{Object, ObjectSection, ObjectSymbol};
use std::path::Path;

/// Bytes of a wrapper read to find its first call (the wrappers are short).
const SCAN: usize = 96;

/// The inner functions' file offsets (for `UProbeAttachLocation::AbsoluteOffset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner {
    /// `ssl_read_internal(s, buf, num, &readbytes)`.
    pub read: u64,
    /// `ssl_write_internal(s, buf, num, &written)`.
    pub write: u64,
}

/// The inner read and write functions of the libssl at `path`, if its code shows them.
pub fn find(path: &Path) -> Option<Inner> {
    let data = std::fs::read(path).ok()?;
    find_in(&data)
}

/// [`find`] on the bytes of an ELF file.
pub fn find_in(data: &[u8]) -> Option<Inner> {
    let file = object::File::parse(data).ok()?;
    if file.architecture() != object::Architecture::X86_64 {
        return None;
    }
    let code = Code64 { file: &file };
    let read = code.shared_callee("SSL_read", "SSL_read_ex")?;
    let write = code.shared_callee("SSL_write", "SSL_write_ex")?;
    if read == write {
        return None;
    }
    Some(Inner { read: code.file_offset(read)?, write: code.file_offset(write)? })
}

/// The target of the first near `call` in the straight-line code `bytes` (at `address`),
/// before any return, jump or invalid byte.
fn first_call(bytes: &[u8], address: u64) -> Option<u64> {
    let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
    for insn in &mut decoder {
        if insn.is_invalid() {
            return None;
        }
        match insn.flow_control() {
            FlowControl::Call if insn.code() == Code::Call_rel32_64 => return Some(insn.near_branch_target()),
            FlowControl::Next | FlowControl::ConditionalBranch => {}
            _ => return None,
        }
    }
    None
}

/// `bytes` begin with a `push` (an instruction the kernel's uprobes emulate).
fn begins_with_push(bytes: &[u8]) -> bool {
    Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE).decode().mnemonic() == Mnemonic::Push
}

struct Code64<'a, 'd> {
    file: &'a object::File<'d>,
}

impl Code64<'_, '_> {
    /// The address both `a` and `b` call first, when it is the same function beginning with a
    /// `push`.
    fn shared_callee(&self, a: &str, b: &str) -> Option<u64> {
        let callee = self.first_call(self.symbol(a)?)?;
        if self.first_call(self.symbol(b)?)? != callee || !self.begins_with_push(callee) {
            return None;
        }
        Some(callee)
    }

    /// A defined dynamic (or static) function symbol's address.
    fn symbol(&self, name: &str) -> Option<u64> {
        self.file
            .dynamic_symbols()
            .chain(self.file.symbols())
            .find(|s| s.is_definition() && s.name().ok().is_some_and(|n| n == name))
            .map(|s| s.address())
    }

    /// The code bytes at `address` (at most `len`).
    fn bytes(&self, address: u64, len: usize) -> Option<&[u8]> {
        let section = self.file.sections().find(|s| s.address() <= address && address < s.address() + s.size())?;
        let data = section.data().ok()?;
        let start = usize::try_from(address - section.address()).ok()?;
        data.get(start..data.len().min(start.saturating_add(len)))
    }

    /// See [`first_call`].
    fn first_call(&self, address: u64) -> Option<u64> {
        first_call(self.bytes(address, SCAN)?, address)
    }

    /// See [`begins_with_push`].
    fn begins_with_push(&self, address: u64) -> bool {
        self.bytes(address, 16).is_some_and(begins_with_push)
    }

    /// The file offset of `address`.
    fn file_offset(&self, address: u64) -> Option<u64> {
        let section = self.file.sections().find(|s| s.address() <= address && address < s.address() + s.size())?;
        let (offset, _) = section.file_range()?;
        Some(offset + (address - section.address()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The libssl this machine's programs use, if any.
    fn system_libssl() -> Option<std::path::PathBuf> {
        ["/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
    }

    #[test]
    fn finds_the_inner_functions_of_the_system_libssl() {
        let Some(lib) = system_libssl() else {
            panic!("no libssl.so.3 here: install libssl3 (openssl)");
        };
        let inner = find(&lib).expect("OpenSSL 3's wrappers call one inner function each");
        assert_ne!(inner.read, inner.write);
        // Each is a function start that begins with a push (0x41 0x5x or 0x5x).
        let data = std::fs::read(&lib).unwrap();
        for off in [inner.read, inner.write] {
            let b = &data[off as usize..];
            assert!(matches!(b[0], 0x50..=0x57) || (b[0] == 0x41 && matches!(b[1], 0x50..=0x57)), "{off:#x}: {b:02x?}");
        }
    }

    #[test]
    fn anything_but_x86_64_elf_is_none() {
        assert_eq!(find_in(b"not an ELF file"), None);
        assert_eq!(find_in(&[]), None);
        // This test binary has no SSL_read.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(find_in(&me), None);
    }

    #[test]
    fn the_first_call_is_found_past_straight_line_code_and_conditional_jumps() {
        // sub $0x18,%rsp; test %edx,%edx; js +0; call rel32 (to 0x1000 + 10 + 0x100)
        let code = [0x48, 0x83, 0xec, 0x18, 0x85, 0xd2, 0x78, 0x00, 0xe8, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(first_call(&code, 0x1000), Some(0x1000 + 13 + 0x100));
    }

    #[test]
    fn a_call_after_a_return_jump_or_garbage_is_not_followed() {
        assert_eq!(first_call(&[0xc3, 0xe8, 0, 0, 0, 0], 0), None); // ret; call
        assert_eq!(first_call(&[0xeb, 0x00, 0xe8, 0, 0, 0, 0], 0), None); // jmp; call
        assert_eq!(first_call(&[0xff, 0xd0], 0), None); // call *%rax (indirect)
        assert_eq!(first_call(&[0x48, 0x83], 0), None); // cut short
        assert_eq!(first_call(&[], 0), None);
    }

    #[test]
    fn push_is_told_from_other_first_instructions() {
        assert!(begins_with_push(&[0x41, 0x55])); // push %r13
        assert!(begins_with_push(&[0x53])); // push %rbx
        assert!(!begins_with_push(&[0x48, 0x83, 0xec, 0x18])); // sub $0x18,%rsp
        assert!(!begins_with_push(&[]));
    }
}
