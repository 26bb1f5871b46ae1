function err = t_error(fn, id, varargin)
%T_ERROR Fail unless calling FN raises an error with identifier ID and (optionally) a
%   message containing each of the texts in VARARGIN; returns the error.
try
    fn();
catch err
    if ~strcmp(err.identifier, id)
        error('test:failed', 'expected error %s, got %s: %s', id, err.identifier, err.message);
    end
    for k = 1:numel(varargin)
        if isempty(strfind(err.message, varargin{k}))
            error('test:failed', 'error message lacks "%s": %s', varargin{k}, err.message);
        end
    end
    return
end
error('test:failed', 'expected error %s, but nothing was raised', id);
end
