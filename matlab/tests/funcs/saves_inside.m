function y = saves_inside(signal)
%SAVES_INSIDE Saves a variable in its own body (warned: a cache hit skips that save).
FilteredEMG().save(signal * 3, 'subject', 9, 'session', 'pre');
y = signal;
end
