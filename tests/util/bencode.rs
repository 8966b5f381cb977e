//! A minimal bencoder for the torrents tests make by hand (hostile ones included).

/// A minimal bencoder for hand-made torrents; dictionary keys are written sorted.
pub enum B {
    I(i64),
    S(Vec<u8>),
    L(Vec<B>),
    D(Vec<(&'static str, B)>),
}

pub fn s(text: &str) -> B {
    B::S(text.as_bytes().to_vec())
}

pub fn encode(value: &B, out: &mut Vec<u8>) {
    match value {
        B::I(i) => out.extend(format!("i{i}e").bytes()),
        B::S(bytes) => {
            out.extend(format!("{}:", bytes.len()).bytes());
            out.extend(bytes);
        }
        B::L(items) => {
            out.push(b'l');
            items.iter().for_each(|item| encode(item, out));
            out.push(b'e');
        }
        B::D(pairs) => {
            out.push(b'd');
            let mut pairs: Vec<&(&str, B)> = pairs.iter().collect();
            pairs.sort_by_key(|(k, _)| k.as_bytes());
            for (key, value) in pairs {
                encode(&s(key), out);
                encode(value, out);
            }
            out.push(b'e');
        }
    }
}
