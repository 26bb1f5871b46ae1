classdef NpyCase < scistack.BaseVariable
end
