"""The run room: frames captured from a source, inferred by workers, and handed as
`FrameResult`s, in order, to whatever sinks the caller gives the loop."""
