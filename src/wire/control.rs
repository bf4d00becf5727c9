//! The `#` control grammar of the numbered-stream protocol (`docs/PROTOCOL.md`): what a
//! client asks ([`Request`], one parser) and what the hub tells it ([`Reply`], one
//! formatter: `Display`). Pure — no socket, no clock, no state — fuzzed (`fuzz/`) and
//! round-trip tested. The dispatcher decides what to answer; only this file spells it.

use std::fmt::{self, Display, Formatter, Write as _};

use crate::ResumeRefusal;

/// A stream as the protocol writes it: the hub-wide `*`, or `@<topic>`. A name is as the
/// client wrote it: the dispatcher checks it against the host's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamName<'a> {
    Hub,
    Topic(&'a str),
}

impl Display for StreamName<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            StreamName::Hub => f.write_str("*"),
            StreamName::Topic(name) => write!(f, "@{name}"),
        }
    }
}

/// A control message from a client, the text after its `#`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// `resume <stream> <epoch> <seq> [<next>]`; a `next` is after `seq`.
    Resume {
        stream: StreamName<'a>,
        epoch: u64,
        seq: u64,
        next: Option<u64>,
    },
    /// `join @<topic> [<n>]`: with the topic's last `n` messages (else the host's default).
    Join(&'a str, Option<u64>),
    /// `leave @<topic>`
    Leave(&'a str),
    /// `who @<topic>`: the topic's members now (presence).
    Who(&'a str),
}

/// Why a control message could not be understood; each is answered with its `#error` line
/// (its `Display`), and otherwise ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadRequest<'a> {
    /// Not UTF-8.
    NotUtf8,
    /// A `resume` with too few or too many words, or a word that is not a number.
    Resume,
    /// A `resume` whose `<next>` is not after its `<seq>`: no gap.
    NextNotAfter,
    /// A `resume` of a stream written neither `*` nor `@name`.
    Stream,
    /// A `join`, `leave` or `who` of something not written `@name`.
    Topic,
    /// A `join` with other than a topic and an optional count after it, or a `leave` or
    /// `who` with other than one word.
    TopicWords(Verb),
    /// Any other request: its first word, as sent.
    Unknown(&'a str),
}

impl<'a> Request<'a> {
    /// Reads the text of a control message, after its `#`: words are separated by exactly
    /// one space, numbers have one spelling (see [`number`]).
    pub(crate) fn parse(text: &'a str) -> Result<Request<'a>, BadRequest<'a>> {
        let mut words = text.split(' ');
        let verb = words.next().unwrap_or_default();
        // At most five words after the verb matter: more is an error either way.
        let rest: Vec<&str> = words.by_ref().take(5).collect();
        match (verb, &rest[..]) {
            ("resume", &[stream, epoch, seq, ref next @ ..]) if next.len() <= 1 => {
                let (Some(epoch), Some(seq)) = (number(epoch), number(seq)) else {
                    return Err(BadRequest::Resume);
                };
                let next = match next.first() {
                    Some(word) => Some(number(word).ok_or(BadRequest::Resume)?),
                    None => None,
                };
                if next.is_some_and(|next| next <= seq) {
                    return Err(BadRequest::NextNotAfter);
                }
                let stream = match stream {
                    "*" => StreamName::Hub,
                    _ => StreamName::Topic(stream.strip_prefix('@').ok_or(BadRequest::Stream)?),
                };
                Ok(Request::Resume {
                    stream,
                    epoch,
                    seq,
                    next,
                })
            }
            ("resume", _) => Err(BadRequest::Resume),
            ("join", &[topic, ref count @ ..]) if count.len() <= 1 => {
                let count = match count.first() {
                    Some(word) => Some(number(word).ok_or(BadRequest::TopicWords(Verb::Join))?),
                    None => None,
                };
                let topic = topic.strip_prefix('@').ok_or(BadRequest::Topic)?;
                Ok(Request::Join(topic, count))
            }
            ("leave" | "who", &[topic]) => {
                let topic = topic.strip_prefix('@').ok_or(BadRequest::Topic)?;
                Ok(match verb {
                    "leave" => Request::Leave(topic),
                    _ => Request::Who(topic),
                })
            }
            ("join", _) => Err(BadRequest::TopicWords(Verb::Join)),
            ("leave", _) => Err(BadRequest::TopicWords(Verb::Leave)),
            ("who", _) => Err(BadRequest::TopicWords(Verb::Who)),
            _ => Err(BadRequest::Unknown(verb)),
        }
    }
}

/// The request as a client writes it, after its `#`.
impl Display for Request<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Request::Resume {
                stream,
                epoch,
                seq,
                next,
            } => {
                write!(f, "resume {stream} {epoch} {seq}")?;
                match next {
                    Some(next) => write!(f, " {next}"),
                    None => Ok(()),
                }
            }
            Request::Join(topic, None) => write!(f, "join @{topic}"),
            Request::Join(topic, Some(n)) => write!(f, "join @{topic} {n}"),
            Request::Leave(topic) => write!(f, "leave @{topic}"),
            Request::Who(topic) => write!(f, "who @{topic}"),
        }
    }
}

/// A client's request about one topic, as `#refused` and `#error` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Join,
    Leave,
    Who,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Join => "join",
            Verb::Leave => "leave",
            Verb::Who => "who",
        }
    }
}

/// Why a client's `#join`, `#leave` or `#who` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicRefusal {
    /// Not a valid topic name: echoed escaped (see [`Reply::Refused`]).
    Name,
    /// Clients may not choose topics on this hub (`#join`, `#leave`); the topic publishes
    /// no presence (`#who`).
    Off,
    /// A `#who` of a topic the client is not in.
    NotMember,
    /// The host's closure said no.
    Denied,
    /// Too many topics, the client's or the hub's.
    Limit,
}

impl TopicRefusal {
    fn word(self) -> &'static str {
        match self {
            TopicRefusal::Name => "name",
            TopicRefusal::Off => "off",
            TopicRefusal::NotMember => "member",
            TopicRefusal::Denied => "denied",
            TopicRefusal::Limit => "limit",
        }
    }
}

/// A control message from the hub to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// `#at * <epoch> <seq>`: where the hub-wide stream starts for a new client.
    At { epoch: u64, seq: u64 },
    /// `#own <stream> <seq>`: the client's own message, not sent back.
    Own { stream: StreamName<'a>, seq: u64 },
    /// `#resumed <stream> <epoch> <from> <to>`: the replayed messages follow.
    Resumed {
        stream: StreamName<'a>,
        epoch: u64,
        from: u64,
        to: u64,
    },
    /// `#noresume <stream> <reason> <epoch> <seq>`. A topic whose name is not a valid one
    /// (`invalid`) is echoed escaped, as in [`Reply::Refused`].
    NoResume {
        stream: StreamName<'a>,
        invalid: bool,
        reason: ResumeRefusal,
        epoch: u64,
        seq: u64,
    },
    /// `#joined @<topic> <epoch> <seq>`
    Joined {
        topic: &'a str,
        epoch: u64,
        seq: u64,
    },
    /// `#left @<topic>`
    Left { topic: &'a str },
    /// `#members @<topic> <epoch> <seq> <list>`: the topic's members at that position;
    /// `list` is `all <n> <member>...` or `count <n>` (`topics::presence`).
    Members {
        topic: &'a str,
        epoch: u64,
        seq: u64,
        list: &'a str,
    },
    /// `#refused join|leave|who @<topic> <reason>`: a name refused as invalid is echoed as
    /// one bounded word (see [`Escaped`]).
    Refused {
        verb: Verb,
        topic: &'a str,
        why: TopicRefusal,
    },
    /// `#refused publish <stream> denied`: the host's closure refused the client's
    /// message to this stream (`*` under `Relay::All`/`Others`), and it went nowhere.
    PublishRefused { stream: StreamName<'a> },
    /// `#error <text>`
    Error(BadRequest<'a>),
}

impl Display for Reply<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match *self {
            Reply::At { epoch, seq } => write!(f, "#at * {epoch} {seq}"),
            Reply::Own { stream, seq } => write!(f, "#own {stream} {seq}"),
            Reply::Resumed {
                stream,
                epoch,
                from,
                to,
            } => write!(f, "#resumed {stream} {epoch} {from} {to}"),
            Reply::NoResume {
                stream,
                invalid,
                reason,
                epoch,
                seq,
            } => {
                f.write_str("#noresume ")?;
                match stream {
                    StreamName::Topic(name) if invalid => write!(f, "@{}", Escaped(name))?,
                    stream => write!(f, "{stream}")?,
                }
                write!(f, " {} {epoch} {seq}", reason.word())
            }
            Reply::Joined { topic, epoch, seq } => write!(f, "#joined @{topic} {epoch} {seq}"),
            Reply::Left { topic } => write!(f, "#left @{topic}"),
            Reply::Members {
                topic,
                epoch,
                seq,
                list,
            } => write!(f, "#members @{topic} {epoch} {seq} {list}"),
            Reply::Refused { verb, topic, why } => {
                let request = verb.word();
                let word = why.word();
                match why {
                    TopicRefusal::Name => {
                        write!(f, "#refused {request} @{} {word}", Escaped(topic))
                    }
                    _ => write!(f, "#refused {request} @{topic} {word}"),
                }
            }
            Reply::PublishRefused { stream } => write!(f, "#refused publish {stream} denied"),
            Reply::Error(bad) => {
                f.write_str("#error ")?;
                match bad {
                    BadRequest::NotUtf8 => f.write_str("control messages are UTF-8"),
                    BadRequest::Resume => f.write_str(
                        "resume needs <stream> <epoch> <seq> [<next>], numbers in decimal \
                         without leading zeros",
                    ),
                    BadRequest::NextNotAfter => f.write_str("resume needs <next> after <seq>"),
                    BadRequest::Stream => f.write_str("streams are * or @name"),
                    BadRequest::Topic => f.write_str("topics are written @name"),
                    BadRequest::TopicWords(Verb::Join) => {
                        f.write_str("join needs one @topic, then optionally a count of messages")
                    }
                    BadRequest::TopicWords(verb) => write!(f, "{} needs one @topic", verb.word()),
                    BadRequest::Unknown(word) => {
                        // Quoted and escaped as Rust's `{:?}` of a string does (which leaves
                        // `'` alone), cut after 32 characters or 64 bytes of escapes,
                        // whichever comes first, so that the line stays short whatever the
                        // word holds.
                        f.write_str("unknown request \"")?;
                        let mut room = 64;
                        for (i, c) in word.chars().enumerate() {
                            let shown = match c {
                                '\'' => c.to_string(),
                                c => c.escape_debug().to_string(),
                            };
                            if i == 32 || shown.len() > room {
                                f.write_str("...")?;
                                break;
                            }
                            room -= shown.len();
                            f.write_str(&shown)?;
                        }
                        f.write_char('"')
                    }
                }
            }
        }
    }
}

/// A topic name that is not a valid one, as `#refused` and `#noresume` echo it: its first
/// 64 characters, each white-space or control character and each `\` written
/// `\u{<hex>}`, then `...` if there were more. One word of at most 640 bytes, whatever the
/// client sent.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        const CHARS: usize = 64;
        for (i, c) in self.0.chars().enumerate() {
            if i == CHARS {
                return f.write_str("...");
            }
            if c.is_whitespace() || c.is_control() || c == '\\' {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// A number of the protocol: `0`, or a digit 1-9 then digits, that fits in a `u64`. No
/// sign, no leading zero, no space: one number has one spelling.
pub(crate) fn number(word: &str) -> Option<u64> {
    let digits = word.bytes().all(|b| b.is_ascii_digit());
    let canonical = word == "0" || !word.starts_with('0');
    if word.is_empty() || !digits || !canonical {
        return None;
    }
    word.parse().ok()
}

/// The grammar's promises for any text after a client's `#`, asserted: a request written
/// back reads as the same request; a refusal is one `#error` line of bounded length. For
/// the fuzz target (`hubcast::fuzzing::control`) and the property test below.
#[cfg(any(test, fuzzing))]
pub(crate) fn check(text: &str) {
    match Request::parse(text) {
        Ok(request) => {
            let written = request.to_string();
            assert_eq!(Request::parse(&written), Ok(request));
        }
        Err(bad) => {
            let line = Reply::Error(bad).to_string();
            assert!(
                line.starts_with("#error ") && !line.contains('\n'),
                "{line}"
            );
            assert!(line.len() <= 200, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_have_one_spelling() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("17"), Some(17));
        assert_eq!(number("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "007",
            "00",
            "+5",
            "-1",
            " 5",
            "5 ",
            "1e3",
            "0x10",
            "18446744073709551616",
            "٣",
        ] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_are_echoed_in_one_bounded_word() {
        let escaped = |name: &str| Escaped(name).to_string();
        assert_eq!(escaped("a\tb\r"), "a\\u{9}b\\u{d}");
        assert_eq!(
            escaped("a b\u{a0}c\u{85}\\"),
            "a\\u{20}b\\u{a0}c\\u{85}\\u{5c}"
        );
        let long = "x".repeat(70_000);
        assert_eq!(escaped(&long), format!("{}...", "x".repeat(64)));
        let worst = "\t".repeat(70_000);
        assert!(escaped(&worst).len() <= 640);
    }

    #[test]
    fn an_unknown_word_is_quoted_short_whatever_it_holds() {
        // Found by the fuzz target: 32 escaped control characters made a 220-byte line.
        let line = |word: &str| Reply::Error(BadRequest::Unknown(word)).to_string();
        assert_eq!(line("bogus"), "#error unknown request \"bogus\"");
        // As `{:?}` writes a short word.
        for word in ["it's", "a\"b\\c", "tab\there", "e\u{301}", "\u{7f}"] {
            assert_eq!(line(word), format!("#error unknown request {word:?}"));
        }
        let long = "x".repeat(40);
        assert_eq!(
            line(&long),
            format!("#error unknown request \"{}...\"", "x".repeat(32))
        );
        let control = "\u{7f}".repeat(40);
        let escaped = line(&control);
        assert_eq!(
            escaped,
            format!("#error unknown request \"{}...\"", "\\u{7f}".repeat(10))
        );
        check(&format!("\n{control}"));
        check(&"é".repeat(100));
    }

    #[test]
    fn requests_and_their_errors() {
        use BadRequest::*;
        let resume = |stream, seq, next| {
            Ok(Request::Resume {
                stream,
                epoch: 7,
                seq,
                next,
            })
        };
        assert_eq!(
            Request::parse("resume * 7 0"),
            resume(StreamName::Hub, 0, None)
        );
        assert_eq!(
            Request::parse("resume @a@b 7 3 5"),
            resume(StreamName::Topic("a@b"), 3, Some(5))
        );
        assert_eq!(Request::parse("join @x"), Ok(Request::Join("x", None)));
        assert_eq!(
            Request::parse("join @x 20"),
            Ok(Request::Join("x", Some(20)))
        );
        assert_eq!(Request::parse("who @x"), Ok(Request::Who("x")));
        assert_eq!(Request::parse("leave @"), Ok(Request::Leave("")));
        for (text, bad) in [
            ("resume * 7 3 3", NextNotAfter),
            ("resume * 7 3 2", NextNotAfter),
            ("resume x 7 3", Stream),
            ("resume * 07 3", Resume),
            ("resume * 7 3 +5", Resume),
            ("resume * 7", Resume),
            ("resume * 7 3 5 6", Resume),
            ("resume  * 7 3", Resume),
            ("join x", Topic),
            ("join @a @b", TopicWords(Verb::Join)),
            ("join @a 05", TopicWords(Verb::Join)),
            ("join @a 5 6", TopicWords(Verb::Join)),
            ("leave", TopicWords(Verb::Leave)),
            ("who @a @b", TopicWords(Verb::Who)),
            ("who a", Topic),
            ("", Unknown("")),
            ("hello there", Unknown("hello")),
        ] {
            assert_eq!(Request::parse(text), Err(bad), "{text:?}");
        }
    }

    #[test]
    fn replies_as_the_protocol_writes_them() {
        let topic = StreamName::Topic("lobby");
        for (reply, text) in [
            (Reply::At { epoch: 5, seq: 0 }, "#at * 5 0"),
            (
                Reply::Own {
                    stream: topic,
                    seq: 3,
                },
                "#own @lobby 3",
            ),
            (
                Reply::Resumed {
                    stream: StreamName::Hub,
                    epoch: 5,
                    from: 4,
                    to: 3,
                },
                "#resumed * 5 4 3",
            ),
            (
                Reply::NoResume {
                    stream: StreamName::Topic("a b"),
                    invalid: true,
                    reason: ResumeRefusal::NotMember,
                    epoch: 0,
                    seq: 0,
                },
                "#noresume @a\\u{20}b member 0 0",
            ),
            (
                Reply::Joined {
                    topic: "lobby",
                    epoch: 5,
                    seq: 9,
                },
                "#joined @lobby 5 9",
            ),
            (Reply::Left { topic: "lobby" }, "#left @lobby"),
            (
                Reply::Refused {
                    verb: Verb::Leave,
                    topic: "x",
                    why: TopicRefusal::Denied,
                },
                "#refused leave @x denied",
            ),
            (
                Reply::Refused {
                    verb: Verb::Who,
                    topic: "x",
                    why: TopicRefusal::NotMember,
                },
                "#refused who @x member",
            ),
            (
                Reply::Members {
                    topic: "lobby",
                    epoch: 5,
                    seq: 9,
                    list: "all 2 u:alice c:7",
                },
                "#members @lobby 5 9 all 2 u:alice c:7",
            ),
            (
                Reply::PublishRefused { stream: topic },
                "#refused publish @lobby denied",
            ),
            (
                Reply::PublishRefused {
                    stream: StreamName::Hub,
                },
                "#refused publish * denied",
            ),
            (
                Reply::NoResume {
                    stream: topic,
                    invalid: false,
                    reason: ResumeRefusal::Denied,
                    epoch: 5,
                    seq: 9,
                },
                "#noresume @lobby denied 5 9",
            ),
            (
                Reply::Error(BadRequest::Unknown("\"hi\"")),
                "#error unknown request \"\\\"hi\\\"\"",
            ),
        ] {
            assert_eq!(reply.to_string(), text);
        }
    }

    fn name() -> impl Strategy<Value = String> {
        // Anything but a space: the grammar separates words by them.
        "[^ ]{0,20}"
    }

    proptest! {
        #[test]
        fn a_request_reads_back_as_it_was_written(
            topic in name(),
            hub in any::<bool>(),
            epoch in any::<u64>(),
            seq in any::<u64>(),
            gap in prop::option::of(1..=u64::MAX),
            verb in 0..4u8,
            count in prop::option::of(any::<u64>()),
        ) {
            let request = match verb {
                0 => Request::Resume {
                    stream: if hub { StreamName::Hub } else { StreamName::Topic(&topic) },
                    epoch,
                    seq,
                    next: gap.and_then(|gap| seq.checked_add(gap)),
                },
                1 => Request::Join(&topic, count),
                2 => Request::Who(&topic),
                _ => Request::Leave(&topic),
            };
            let text = request.to_string();
            prop_assert_eq!(Request::parse(&text), Ok(request));
        }

        #[test]
        fn any_text_is_a_request_or_one_error_line(
            text in "\\PC{0,80}|[ a-z@*0-9]{0,40}|[\\x00-\\x20\\x7f-\\u{a0}a#@]{0,80}"
        ) {
            check(&text);
        }
    }
}
