function t_assert(cond, varargin)
%T_ASSERT Fail the current test unless COND is true; the message is sprintf(VARARGIN{:}).
if ~(islogical(cond) || isnumeric(cond)) || isempty(cond) || ~all(cond(:))
    if isempty(varargin)
        msg = 'assertion failed';
    else
        msg = sprintf(varargin{:});
    end
    error('test:failed', '%s', msg);
end
end
