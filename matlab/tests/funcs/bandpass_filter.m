function y = bandpass_filter(signal, low_hz, high_hz)
%BANDPASS_FILTER The README seed example's filter (a stand-in: scale and shift).
if nargin < 2
    low_hz = 20;
end
if nargin < 3
    high_hz = 450;
end
y = signal * 2 + low_hz / high_hz;
end
