//! Tuples of codecs, up to 12 items: the items one after the other.

use bytes::{Bytes, BytesMut};

use super::Codec;
use crate::error::DecodeError;

macro_rules! tuple_codec {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Codec),+> Codec for ($($name,)+) {
            type Value = ($($name::Value,)+);
            fn encode(&self, v: &Self::Value, dst: &mut BytesMut) {
                $(self.$idx.encode(&v.$idx, dst);)+
            }
            fn decode(&self, src: &mut Bytes) -> Result<Self::Value, DecodeError> {
                Ok(($(self.$idx.decode(src)?,)+))
            }
            fn schema(&self, out: &mut String) {
                out.push('(');
                let mut first = true;
                $(
                    if !std::mem::take(&mut first) { out.push(','); }
                    self.$idx.schema(out);
                )+
                let _ = first;
                out.push(')');
            }
            fn min_len(&self) -> usize {
                0 $(+ self.$idx.min_len())+
            }
        }
    };
}

tuple_codec!(A 0);
tuple_codec!(A 0, B 1);
tuple_codec!(A 0, B 1, C 2);
tuple_codec!(A 0, B 1, C 2, D 3);
tuple_codec!(A 0, B 1, C 2, D 3, E 4);
tuple_codec!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_codec!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_codec!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_codec!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_codec!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_codec!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_codec!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
