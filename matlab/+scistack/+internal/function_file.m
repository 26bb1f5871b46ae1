function [name, file, handle] = function_file(fn, what, caller)
%FUNCTION_FILE The name, .m file and handle of a named function (a handle such as @bandpass
%   or its name). for_each and Thunk identify a function by the text of its file, so an
%   anonymous function (no file) is refused. WHAT says which function ('the function', 'a
%   helper'), CALLER who asks ('for_each', 'Thunk'), for the error messages.
if isa(fn, 'function_handle')
    name = func2str(fn);
    if ~isempty(name) && name(1) == '@'
        name = name(2:end);
    end
    if any(name == '(')
        error('scistack:badArgument', ['%s needs %s as a named function in a .m ', ...
            'file (@bandpass), not an anonymous function: its identity is the text of ', ...
            'its file'], caller, what);
    end
elseif ischar(fn) && ~isempty(fn)
    name = fn;
else
    error('scistack:badArgument', ['%s needs %s as a function handle (@bandpass) ', ...
        'or a function name, got a %s'], caller, what, class(fn));
end
file = which(name);
[~, ~, ext] = fileparts(file);
if isempty(file) || ~strcmpi(ext, '.m') || ~exist(file, 'file')
    error('scistack:badArgument', ['%s is not a function in a .m file on the path ', ...
        '(which says "%s"); %s identifies a function by the text of its file'], ...
        name, file, caller);
end
handle = str2func(name);
end
