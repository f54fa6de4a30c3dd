//! Fuzzes the hypercall argument decoding (`pv_abi::call`): the input is a
//! call number (bytes 0..8, little-endian), five argument words (8..48) and
//! a payload (the rest, zero-padded to 48 bytes first), the bytes a guest
//! buffer would hold. Checked:
//!
//! - `Call::decode` never panics; a decoded call has the number asked for,
//!   encodes to words that decode to the same call, and every buffer,
//!   array and figure in it is within its bound and taken from the right
//!   word (a cut length is the word or the bound, a refused one the word);
//! - a refusal is `NoSys` exactly for an unknown number (or domctl
//!   operation) and `Invalid` otherwise, with a reason no longer than
//!   `last_error` gives, and is explained only for the calls whose
//!   refusals `last_error` explains;
//! - the payload read as `mmu_update` requests, as a frame list, as
//!   `domctl create`'s name and command line and as `lu_load`'s module
//!   name: each request is refused exactly when it is misaligned or a
//!   present global mapping, and otherwise encodes back to its bytes; the
//!   create arguments keep to the command-line bound and encode back to
//!   what decodes to them.

#![no_main]

use hvlu_types::canonical::LOWER_HALF_END;
use hvlu_types::pte::{GLOBAL, PRESENT};
use hvlu_types::{MFN_LIMIT, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;
use pv_abi::call::{
    mfn_list, mmu_updates, module_name, Call, CreateArgs, DecodeError, Domctl, GuestArray,
    GuestBuf, MAX_BATCH, MAX_CMDLINE, MAX_CONSOLE_IO, MAX_CREATE_ARGS, MAX_DEVICES, MAX_DIRTY_OUT,
    MAX_DOMAIN_KIB, MAX_HOSTLINK_READ, MAX_HOSTLINK_WRITE, MAX_LIST, MAX_MEMORY_MAP,
    MAX_MODULE_NAME,
};
use pv_abi::hypercall::{
    DomctlOp, Error, Hypercall, LuStatus, MmuUpdate, SysInfo, MAX_ERROR_MESSAGE,
};

fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

/// A buffer cut at `max`: from `a0`, of `min(a1, max)` bytes.
fn cut(buf: GuestBuf, a: &[u64; 5], max: u64) {
    assert_eq!(buf.addr, a[0]);
    assert_eq!(buf.len, a[1].min(max));
}

/// An array cut at `max`.
fn cut_array(array: GuestArray, a0: u64, a1: u64, max: u64) {
    assert_eq!(array.addr, a0);
    assert_eq!(array.count, a1.min(max));
}

/// A buffer whose length was refused above `max`: taken as it is.
fn bounded(buf: GuestBuf, a0: u64, a1: u64, max: u64) {
    assert_eq!((buf.addr, buf.len), (a0, a1));
    assert!(buf.len <= max);
}

/// What a decoded call holds, against the words it came from.
fn check_fields(call: &Call, a: &[u64; 5]) {
    let size = |n: usize| n as u64;
    match *call {
        Call::ConsoleWrite { buf } | Call::ConsoleRead { buf } => cut(buf, a, MAX_CONSOLE_IO),
        Call::HostlinkRead { buf } => cut(buf, a, MAX_HOSTLINK_READ),
        Call::HostlinkWrite { buf } => cut(buf, a, MAX_HOSTLINK_WRITE),
        Call::SysInfo { buf } => cut(buf, a, size(size_of::<SysInfo>())),
        Call::LuStatus { buf } => cut(buf, a, size(size_of::<LuStatus>())),
        Call::LastError { buf } => cut(buf, a, size(MAX_ERROR_MESSAGE)),
        Call::LuLoad { name, force } => {
            bounded(name, a[0], a[1], MAX_MODULE_NAME);
            assert_eq!(u64::from(force), a[2]);
        }
        // Any length: the hypervisor bounds it by its live-update region.
        Call::LuLoadBuffer { image, name } => {
            assert_eq!((image.addr, image.len), (a[0], a[1]));
            bounded(name, a[2], a[3], MAX_MODULE_NAME);
        }
        Call::MmuUpdate { reqs: x }
        | Call::IncreaseReservation { mfns_out: x }
        | Call::DecreaseReservation { mfns: x } => cut_array(x, a[0], a[1], MAX_BATCH),
        Call::PinTable { mfn, level } => {
            assert_eq!((mfn.0, level as u64), (a[0], a[1]));
            assert!((1..=4).contains(&a[1]));
        }
        Call::UnpinTable { mfn } | Call::NewBaseptr { mfn } => assert_eq!(mfn.0, a[0]),
        Call::Shutdown { code } => assert_eq!(code, a[0]),
        Call::Report { kind, value } => assert_eq!((kind as u64, value), (a[0], a[1])),
        Call::SetSegmentBase { which, base } => {
            assert_eq!((which as u64, base), (a[0], a[1]));
            assert!(a[0] <= 1 && base < LOWER_HALF_END);
        }
        Call::Domctl(op) => {
            assert_eq!(op.op() as u64, a[0]);
            match op {
                Domctl::Create { args, kib, hole } => {
                    bounded(args, a[1], a[2], MAX_CREATE_ARGS);
                    assert_eq!(kib, a[3]);
                    assert!(kib > 0 && kib % 4 == 0 && kib <= MAX_DOMAIN_KIB);
                    assert_eq!(hole.map_or(0, |h| h.addr()), a[4]);
                }
                Domctl::Destroy { id } | Domctl::Pause { id } | Domctl::Unpause { id } => {
                    assert_eq!(u64::from(id.0), a[1])
                }
                Domctl::List { out } => cut_array(out, a[1], a[2], MAX_LIST),
                Domctl::Modules { out } => assert_eq!((out.addr, out.len), (a[1], a[2])),
                Domctl::IomemPermit {
                    id,
                    first,
                    count,
                    allow,
                } => {
                    assert_eq!(
                        (u64::from(id.0), first.0, count, u64::from(allow)),
                        (a[1], a[2], a[3], a[4])
                    );
                    assert!(count > 0 && first.0 + count <= MFN_LIMIT);
                }
                Domctl::LogDirty { id, op, out } => {
                    assert_eq!((u64::from(id.0), op as u64), (a[1], a[2]));
                    cut_array(out, a[3], a[4], MAX_DIRTY_OUT);
                }
            }
        }
        Call::MemoryMap { domid, out } => {
            assert_eq!(u64::from(domid.0), a[0]);
            cut_array(out, a[1], a[2], MAX_MEMORY_MAP);
        }
        Call::MachineMemoryMap { out } => cut_array(out, a[0], a[1], MAX_MEMORY_MAP),
        Call::Devices { out } => cut_array(out, a[0], a[1], MAX_DEVICES),
        Call::ReadGuest {
            domid,
            gpfn,
            offset,
            out,
        } => {
            assert_eq!((u64::from(domid.0), gpfn.0, offset), (a[0], a[1], a[2]));
            assert!(offset < PAGE_SIZE);
            assert_eq!((out.addr, out.len), (a[3], a[4].min(PAGE_SIZE - offset)));
        }
        Call::Yield | Call::Poweroff | Call::LuUnload | Call::LuExec => {}
    }
}

fn check_refusal(nr: u64, a: &[u64; 5], e: DecodeError) {
    let known = Hypercall::from_repr(nr);
    assert_eq!(
        known.is_none(),
        e == DecodeError::UnknownCall { nr },
        "{e:?}"
    );
    let unknown_op = known == Some(Hypercall::Domctl) && DomctlOp::from_repr(a[0]).is_none();
    assert_eq!(
        unknown_op,
        e == DecodeError::UnknownDomctl { op: a[0] },
        "{e:?}"
    );
    let expected = if known.is_none() || unknown_op {
        Error::NoSys
    } else {
        Error::Invalid
    };
    assert_eq!(e.error(), expected, "{e:?}");
    let reason = e.to_string();
    assert!(!reason.is_empty() && reason.len() <= MAX_ERROR_MESSAGE);
    if e.explained() {
        assert!(
            matches!(
                known,
                Some(
                    Hypercall::Domctl
                        | Hypercall::LuLoad
                        | Hypercall::LuLoadBuffer
                        | Hypercall::ReadGuest
                )
            ),
            "{e:?} explained for {known:?}"
        );
    }
}

fn check_payload(payload: &[u8]) {
    // `mmu_update` requests.
    let writes: Vec<_> = mmu_updates(payload).collect();
    assert_eq!(writes.len(), payload.len() / MmuUpdate::SIZE);
    for (w, raw) in writes.iter().zip(payload.chunks_exact(MmuUpdate::SIZE)) {
        let (ptr, val) = (word(raw), word(&raw[8..]));
        let global = val & PRESENT != 0 && val & GLOBAL != 0;
        match *w {
            Ok(w) => {
                assert!(w.index < 512);
                assert_eq!(w.encode(), MmuUpdate { ptr, val });
                assert!(ptr % 8 == 0 && !global);
            }
            Err(DecodeError::MisalignedEntry { ptr: p }) => assert!(p == ptr && ptr % 8 != 0),
            Err(DecodeError::GlobalMapping { val: v }) => {
                assert!(v == val && ptr % 8 == 0 && global)
            }
            Err(e) => panic!("a request refused as {e:?}"),
        }
    }
    // A frame list.
    assert!(mfn_list(payload).eq(payload.chunks_exact(8).map(word)));
    // `domctl create`'s name and command line.
    match CreateArgs::decode(payload) {
        Ok(args) => {
            assert!(!args.name.contains('\0'));
            assert!(args.cmdline.len() <= MAX_CMDLINE);
            let mut out = vec![0u8; payload.len() + 1];
            let n = args.encode(&mut out).unwrap();
            assert_eq!(CreateArgs::decode(&out[..n]), Ok(args));
            if payload.contains(&0) {
                assert_eq!(&out[..n], payload);
            }
        }
        Err(DecodeError::CreateArgsNotUtf8 | DecodeError::CommandLineTooLong { .. }) => {}
        Err(e) => panic!("create arguments refused as {e:?}"),
    }
    // `lu_load`'s module name.
    assert_eq!(
        module_name(payload).is_ok(),
        std::str::from_utf8(payload).is_ok()
    );
}

fuzz_target!(|data: &[u8]| {
    let mut head = [0u8; 48];
    let n = data.len().min(48);
    head[..n].copy_from_slice(&data[..n]);
    let payload = &data[n..];
    let nr = word(&head);
    let a: [u64; 5] = core::array::from_fn(|i| word(&head[8 + 8 * i..]));

    let decoded = Call::decode(nr, a);
    assert_eq!(Call::decode(nr, a), decoded);
    match decoded {
        Ok(call) => {
            assert_eq!(call.hypercall() as u64, nr);
            let (nr2, a2) = call.encode();
            assert_eq!(nr2, nr);
            assert_eq!(Call::decode(nr2, a2), Ok(call), "{a:?} -> {a2:?}");
            check_fields(&call, &a);
        }
        Err(e) => check_refusal(nr, &a, e),
    }
    check_payload(payload);
});
