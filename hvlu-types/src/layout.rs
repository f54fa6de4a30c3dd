//! [`assert_layout!`](crate::assert_layout): the compile-time check that a
//! `#[repr(C)]` struct is the table a specification draws — its size and
//! the offset of each field.

/// Asserts, when the crate compiles, that the struct `$t` is `$size` bytes
/// and that each listed field starts at its offset:
///
/// ```
/// #[repr(C)]
/// struct Pair {
///     a: [u8; 4],
///     b: u32,
/// }
/// hvlu_types::assert_layout!(Pair, 8, { a: 0, b: 4 });
/// ```
///
/// A wrong size or offset stops the build with a message naming the
/// struct or the field. List every field: one left out is not checked.
#[macro_export]
macro_rules! assert_layout {
    ($t:ty, $size:expr, { $($field:ident: $offset:expr),+ $(,)? }) => {
        const _: () = {
            assert!(
                ::core::mem::size_of::<$t>() == $size,
                concat!("the size of ", stringify!($t), " is not ", stringify!($size)),
            );
            $(
                assert!(
                    ::core::mem::offset_of!($t, $field) == $offset,
                    concat!(
                        "the offset of ", stringify!($t), "::", stringify!($field),
                        " is not ", stringify!($offset)
                    ),
                );
            )+
        };
    };
}
