//! `IO::Event::Selector::EPoll` (to be written).

use magnus::{Error, RModule, Ruby};

pub fn init(_ruby: &Ruby, _selector_module: RModule) -> Result<(), Error> {
    Ok(())
}
