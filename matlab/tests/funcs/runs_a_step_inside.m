function y = runs_a_step_inside(signal)
%RUNS_A_STEP_INSIDE Runs a pipeline step in its own body (refused: a cache hit would skip it).
scistack.for_each(@bandpass, struct('signal', RawEMG(), 'low_hz', 2), {Scratch()}, ...
    'subject', 1, 'session', 'pre');
y = signal;
end
