function y = loads_inside(signal)
%LOADS_INSIDE Loads a variable in its own body (refused: its call key cannot see that input).
first = RawEMG().load('subject', 1, 'session', 'pre');
y = signal * first.data(1);
end
