//! io-event-uring: the selectors of io-event (`IO::Event::Selector::URing` and
//! `IO::Event::Selector::EPoll`) as a Rust extension.

pub mod epoll;
pub mod ruby;
pub mod selector;
pub mod sys;
pub mod uring;

use magnus::{prelude::*, Error, Ruby};

#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    selector::core::track_forks();
    let io_event = ruby.class_io().define_module("Event")?;
    let selector = io_event.define_module("Selector")?;
    ruby::pins::init(ruby, selector)?;
    ruby::fiber::init(ruby);
    uring::init(ruby, selector)?;
    epoll::init(ruby, selector)?;
    selector::process_wait::init(ruby);
    ruby::thread::init();
    ruby::buffer::init();
    Ok(())
}
