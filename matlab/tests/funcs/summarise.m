function s = summarise(signal)
%SUMMARISE A struct output holding an array: stored as json with a child npy object.
s = struct('peak', max(signal), 'head', signal(1:3)', 'label', 'emg');
end
