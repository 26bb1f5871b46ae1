function y = bandpass(signal, low_hz)
%BANDPASS A stand-in filter for the for_each tests; counts its calls in a global.
global SCISTACK_TEST_CALLS
if isempty(SCISTACK_TEST_CALLS)
    SCISTACK_TEST_CALLS = 0;
end
SCISTACK_TEST_CALLS = SCISTACK_TEST_CALLS + 1;
y = signal * 2 + low_hz;
end
