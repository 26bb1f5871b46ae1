function y = fails_on(signal)
%FAILS_ON Fails when the second sample exceeds 2.5 (subjects 2 and 3 at 'pre').
if signal(2) > 2.5
    error('test:tooBig', 'second sample %g is too big', signal(2));
end
y = signal;
end
