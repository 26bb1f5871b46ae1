function [parts, n] = low_and_high(signals, mode)
%LOW_AND_HIGH A fan-out step (scistack.Split): the lowest and highest sample of all the
%   subject's sessions, keyed 'low' and 'high', and how many sessions there were. MODE
%   'wrong' returns a plain number where the map is due, 'struct' a struct.
all_samples = cat(1, signals{:});
if strcmp(mode, 'wrong')
    parts = min(all_samples);
elseif strcmp(mode, 'struct')
    parts = struct('low', min(all_samples), 'high', max(all_samples));
else
    parts = containers.Map({'low', 'high'}, {min(all_samples), max(all_samples)});
end
n = numel(signals);
end
