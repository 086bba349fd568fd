//! A parser chain as compare mode's candidate: it parses exactly the lines the live chain
//! parsed, on a thread of its own (see [`crate::swap::candidate`]); its events are compared
//! with the live ones line by line and go nowhere else.

use std::borrow::Cow;

use crate::event::Event;
use crate::plugin::ParserChain;
use crate::swap::candidate::Contender;

impl Contender for ParserChain {
    /// A batch's lines.
    type Input = Vec<String>;
    type Out = Event;
    const THREAD: &'static str = "shadow";

    fn names(&self) -> String {
        (self.parsers().iter())
            .map(|p| p.plugin().name().to_owned())
            .collect::<Vec<_>>()
            .join("+")
    }

    fn version(&self) -> String {
        ParserChain::version(self)
    }

    fn run(&mut self, lines: &Vec<String>) -> Option<Vec<(usize, Event)>> {
        let out = self.parse(lines);
        out.faults.is_empty().then_some(out.events)
    }

    fn describe(lines: &Vec<String>) -> Cow<'_, [String]> {
        Cow::Borrowed(lines)
    }
}
