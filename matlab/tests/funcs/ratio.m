function [r, n] = ratio(signal, base, scale, offsets, opts)
%RATIO Two outputs from a signal, a pinned baseline and constants of several kinds.
r = signal ./ base * double(scale) + offsets(1) + opts.shift;
n = int32(numel(signal));
end
